"""The autoscaler's decision log: one JSON object per line in ``<home>/pool/autoscale.jsonl``.

``smartcache pool status`` reads the tail of it; the autoscaler appends to it. Kept apart from
the decision logic so that reading it needs neither HTCondor nor a running autoscaler.
"""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

LOG_NAME = "autoscale.jsonl"
MAX_BYTES = 4 * 2**20      # rotate once past this, keeping one previous file


def decision_log_path(home: Path) -> Path:
    return Path(home) / "pool" / LOG_NAME


def append_decision(home: Path, record: dict) -> None:
    path = decision_log_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > MAX_BYTES:
        os.replace(path, path.with_suffix(".jsonl.1"))
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def read_decisions(home: Path, n: int = 10) -> list[dict]:
    """The last ``n`` decisions, oldest first; lines that are not JSON objects are skipped."""
    path = decision_log_path(home)
    if not path.exists():
        return []
    out: deque[dict] = deque(maxlen=n)
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue            # a line cut short by a crash
            if isinstance(rec, dict):
                out.append(rec)
    return list(out)
