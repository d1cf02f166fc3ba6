"""What one reduce process cost: a one-line JSON summary a node prints on stderr when it ends.

DAG runs (the local executor and HTCondor both keep a node's stderr in ``logs/<node>.err``) are
measured from these lines -- records, bytes in and out, CPU seconds, peak RSS, and when the process
started, entered ``main`` and finished -- which is how ``benchmarks/bench_scale.py`` separates a
node's own cost (interpreter start-up and imports included) from the scheduler's overhead.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

PREFIX = "reduce-stats "


def process_started() -> float | None:
    """Epoch seconds at which this process started (Linux /proc), None where that is unknown."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def stats(result: Any, main_started: float) -> dict:
    """The summary of a finished reduce (``result``: a ``ReduceResult``)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    reports = [r for p in result.partitions for r in p.reports]
    outputs = [p.path for p in result.partitions if p.path is not None]
    return {"records": result.records_read, "kept": result.records_kept,
            "rows": sum(p.n_rows for p in result.partitions), "days": len(result.partitions),
            "bytes_in": sum(r.n_bytes or 0 for r in reports),
            "bytes_out": sum(Path(p).stat().st_size for p in outputs if Path(p).exists()),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
            "process_start": process_started(), "main_start": round(main_started, 3),
            "end": round(time.time(), 3)}


def line(result: Any, main_started: float) -> str:
    return PREFIX + json.dumps(stats(result, main_started), sort_keys=True)


def parse(text: str) -> dict | None:
    """The last stats line in a node's stderr, or None."""
    found = None
    for ln in text.splitlines():
        if ln.startswith(PREFIX):
            try:
                found = json.loads(ln[len(PREFIX):])
            except ValueError:
                continue
    return found
