"""DAG task: the feedback of a retraining window -> a trace CSV, registered as a ``trace`` dataset.

    python -m smartcache.tasks.feedback --catalog-url URL --run-id N (--site S | --all) --days 28 \
        [--end YYYY-MM-DD] [--holdout 0.2] --out DATA/retrain/run-N --name trace/feedback/S/D1_D2

Reads the day folders that the catalog's ``feedback/<S>/<D>`` datasets of the window name
(:func:`~smartcache.tasks.feedback.window.choose_window`), writes ``out/trace.csv``
(``timestamp,site,lfn,size``, time order) and registers it as dataset ``--name`` of kind ``trace`` whose
parents are those feedback datasets; its metadata says the window and its first held-out day, which the
train node excludes and the evaluate node counts. Too little feedback is a clear error (exit 1), not an
empty trace. The workflow passes ``--end`` (fixed when it was planned), so a retried node exports the same
days even if the service has written a new day meanwhile.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from smartcache.catalog import Dataset, Store, open_store
from smartcache.catalog.errors import Invalid, SmartcacheError
from smartcache.tasks.common.io import file_sha256
from smartcache.tasks.common.trace import DAY
from smartcache.tasks.feedback import window as FW
from smartcache.tasks.feedback.partitions import read_days, write_trace

TRACE_KIND = "trace"
TRACE_FILE = "trace.csv"


@dataclass(frozen=True)
class Exported:
    dataset: Dataset
    path: Path
    window: FW.Window
    requests: int
    requests_before_held_out: int


def trace_name(site: str | None, window: FW.Window) -> str:
    """The catalog name of a window's trace (one per site or ``all``, per window)."""
    return f"{TRACE_KIND}/feedback/{site or 'all'}/{window.first.isoformat()}_{window.last.isoformat()}"


def export_window(store: Store, out: Path, *, site: str | None, days: int, end: date | None = None,
                  holdout: float = FW.DEFAULT_HOLDOUT, name: str | None = None, run_id: int | None = None,
                  min_requests: int = FW.MIN_TRAIN_REQUESTS) -> Exported:
    """Export the window's feedback to ``out/trace.csv`` and register it (see the module doc)."""
    window = FW.choose_window(store, site=site, days=days, end=end, holdout=holdout, min_requests=min_requests)
    table = read_days(d.folder for d in window.days)
    if site is not None:   # a day folder holds one site's accesses; say so if one did not
        table = table.filter(pc.equal(table.column("site"), site))
    ts = table.column("timestamp").to_numpy()
    held_from = _day_start(window.held_out_from)
    n_before, n_held = int(np.count_nonzero(ts < held_from)), int(np.count_nonzero(ts >= held_from))
    where = f"{window.first}..{window.last} ({', '.join(window.sites)})"
    if n_before < min_requests:
        raise Invalid(f"the feedback files of {where} hold {n_before} requests before the held-out day "
                      f"{window.held_out_from}: at least {min_requests} are needed to train")
    if n_held == 0:
        raise Invalid(f"the feedback files of {where} hold no request from the held-out day {window.held_out_from} on")
    path = write_trace(table, Path(out) / TRACE_FILE)
    meta = {**window.describe(), "requests": table.num_rows, "requests_before_held_out": n_before,
            "first_ts": float(ts[0]), "last_ts": float(ts[-1]), "source": "feedback"}
    ds = store.register_dataset(name or trace_name(site, window), TRACE_KIND, path.resolve().as_uri(), format="csv",
                                checksum=file_sha256(path), n_rows=table.num_rows, n_bytes=path.stat().st_size,
                                meta=meta, parents=window.datasets, run_id=run_id)
    return Exported(ds, path, window, table.num_rows, n_before)


def _day_start(day: date) -> float:
    return float((day - date(1970, 1, 1)).days * DAY)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.feedback", description=__doc__.split("\n")[0])
    ap.add_argument("--catalog-url", required=True)
    ap.add_argument("--run-id", type=int)
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--site", help="one site's feedback")
    who.add_argument("--all", action="store_true", help="every site's feedback, one multi-site trace")
    ap.add_argument("--days", type=int, default=FW.DEFAULT_DAYS, help="window length in days")
    ap.add_argument("--end", help="last day of the window (YYYY-MM-DD; default: the newest feedback day)")
    ap.add_argument("--holdout", type=float, default=FW.DEFAULT_HOLDOUT,
                    help="share of the window's days held out (at least one day)")
    ap.add_argument("--min-requests", type=int, default=FW.MIN_TRAIN_REQUESTS)
    ap.add_argument("--out", type=Path, required=True, help="folder for trace.csv")
    ap.add_argument("--name", help="trace dataset name (default: trace/feedback/<site|all>/<first>_<last>)")
    args = ap.parse_args(argv)
    try:
        end = _day(args.end) if args.end else None
        store = open_store(args.catalog_url)
        try:
            done = export_window(store, args.out, site=args.site, days=args.days, end=end, holdout=args.holdout,
                                 name=args.name, run_id=args.run_id, min_requests=args.min_requests)
        finally:
            store.close()
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"dataset": done.dataset.name, "path": str(done.path), "requests": done.requests,
                      "requests_before_held_out": done.requests_before_held_out, **done.window.describe(),
                      "parents": len(done.dataset.parents)}, sort_keys=True))
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise Invalid(f"--end must be a day (YYYY-MM-DD), not {text!r}") from e


if __name__ == "__main__":
    sys.exit(main())
