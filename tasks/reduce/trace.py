"""Write the simulator's trace CSV (``timestamp,site,lfn,size``) from raw access logs or reduced tables.

From raw logs the trace is exact: one row per access record that is an analysis access
(``Type == "analysis"``), successful (``SuccessFlag == 1``) and has a known size (``FileSize > 0``).
``timestamp`` = ``StartedRunningTimeStamp / 1000`` (epoch seconds, ms kept as decimals): the job's start is
when it opens its input files -- the records carry no per-file open time. ``site`` = ``SiteName``,
``lfn`` = ``FileName``, ``size`` = ``FileSize``. Rows are written partition by partition (day order) and
sorted by time within a partition; the simulator sorts on load anyway. Partitions are read with the shared
reader (:mod:`smartcache.tasks.reduce.readers`): a damaged partition contributes what could be decoded and is
listed in the result's ``damaged``, it does not stop the export.

Reduced partitions aggregate per (day, site, file), so a trace made from them is an approximation: each
row stands for ``n_access`` requests spread evenly between its ``first_ts`` and ``last_ts``.

Usable as ``python -m smartcache.tasks.reduce.trace --raw DIR --out FILE.csv``.
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.common.trace import TRACE_COLUMNS
from smartcache.tasks.reduce.report import ReadReport

_FIELDS = ("StartedRunningTimeStamp", "SiteName", "FileName", "FileSize", "Type", "SuccessFlag")


class ExportError(SmartcacheError):
    """An export request that cannot be carried out as given (e.g. a malformed date or window)."""


@dataclass(frozen=True)
class ExportStats:
    out: Path
    partitions: int
    records: int
    rows: int
    damaged: tuple[str, ...] = ()      # "partition: reason" for partitions read only in part

    def to_dict(self) -> dict:
        return {"out": str(self.out), "partitions": self.partitions, "records": self.records, "rows": self.rows,
                "damaged": list(self.damaged)}


# -- the window -------------------------------------------------------------------------------
def _parse_day(text: str, end: bool) -> date:
    m = re.fullmatch(r"(\d{4})-(\d{1,2})(?:-(\d{1,2}))?", text.strip())
    if not m:
        raise ExportError(f"not a date: {text!r} (use YYYY-MM or YYYY-MM-DD)")
    y, mo = int(m.group(1)), int(m.group(2))
    try:
        if m.group(3):
            return date(y, mo, int(m.group(3)))
        return date(y, mo, calendar.monthrange(y, mo)[1] if end else 1)
    except (ValueError, calendar.IllegalMonthError) as e:
        raise ExportError(f"not a date: {text!r} ({e})") from e


def window(months: int | None = None, start: str | None = None, end: str | None = None,
           latest: date | None = None) -> tuple[date | None, date | None]:
    """(first, last) day to export; ``months`` counts back from ``end`` (or from ``latest``'s month)."""
    if months is not None and start is not None:
        raise ExportError("give --months or --start, not both")
    if months is not None and months < 1:
        raise ExportError("--months must be at least 1")
    last = _parse_day(end, end=True) if end else None
    first = _parse_day(start, end=False) if start else None
    if months is not None:
        anchor = last or latest
        if anchor is None:
            return None, None
        index = anchor.year * 12 + anchor.month - 1 - (months - 1)
        first = date(index // 12, index % 12 + 1, 1)
        last = last or date(anchor.year, anchor.month, calendar.monthrange(anchor.year, anchor.month)[1])
    if first and last and first > last:
        raise ExportError(f"the window starts ({first}) after it ends ({last})")
    return first, last


# -- raw partitions ---------------------------------------------------------------------------
def raw_partitions(root: str | Path) -> list[tuple[date, str]]:
    """Every raw partition under ``root`` (a folder or fsspec URL) with its day, in day order."""
    from smartcache.tasks.reduce.readers import list_partitions, partition_day

    found = []
    for p in list_partitions(root):
        d = partition_day(p)
        if d is not None:
            found.append((d, p))
    return sorted(found)


def raw_rows(source: str, site: str | None = None) -> tuple[pa.Table, ReadReport]:
    """The trace rows of one raw partition (filtered, time-sorted) and the reader's report.

    Damage never raises: the shared reader keeps what it can decode and says what it lost.
    """
    import pyarrow.compute as pc

    from smartcache.tasks.reduce.readers import read_partition

    part = read_partition(source, columns=_FIELDS)
    tables = []
    for batch in part:
        keep = pc.and_kleene(pc.equal(batch.column("Type"), "analysis"), pc.equal(batch.column("SuccessFlag"), 1))
        keep = pc.and_kleene(keep, pc.greater(batch.column("FileSize"), 0))
        keep = pc.and_kleene(keep, pc.is_valid(batch.column("StartedRunningTimeStamp")))
        if site is not None:
            keep = pc.and_kleene(keep, pc.equal(batch.column("SiteName"), site))
        b = batch.filter(pc.fill_null(keep, False))
        tables.append(pa.table({
            "timestamp": pc.divide(b.column("StartedRunningTimeStamp").cast(pa.float64()), 1000.0),
            "site": b.column("SiteName"), "lfn": b.column("FileName"), "size": b.column("FileSize").cast(pa.int64())}))
    table = pa.concat_tables(tables) if tables else pa.table(
        {"timestamp": pa.array([], pa.float64()), "site": pa.array([], pa.string()),
         "lfn": pa.array([], pa.string()), "size": pa.array([], pa.int64())})
    order = np.argsort(table.column("timestamp").to_numpy(), kind="stable")
    return table.take(pa.array(order)), part.report


# -- reduced partitions -----------------------------------------------------------------------
def reduced_rows(path: Path, site: str | None, first: date | None, last: date | None) -> tuple[pa.Table, int]:
    """Approximate trace rows from one reduced Parquet file: ``n_access`` rows per (day, site, file)."""
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path, columns=["day", "site", "lfn", "size", "n_access", "first_ts", "last_ts"])
    except (OSError, pa.ArrowInvalid, KeyError) as e:
        raise ExportError(f"cannot read reduced partition {path}: {e}") from e
    n = t.num_rows
    days = np.asarray(t.column("day").cast(pa.int32()).to_numpy(zero_copy_only=False), np.int64)
    keep = np.ones(n, bool)
    if first is not None:
        keep &= days >= (first - date(1970, 1, 1)).days
    if last is not None:
        keep &= days <= (last - date(1970, 1, 1)).days
    if site is not None:
        keep &= np.asarray(t.column("site").to_pylist(), object) == site
    t = t.filter(pa.array(keep))
    counts = np.maximum(t.column("n_access").to_numpy(zero_copy_only=False).astype(np.int64), 1)
    rep = np.repeat(np.arange(t.num_rows), counts)
    k = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)     # 0..count-1 per row
    lo = t.column("first_ts").to_numpy(zero_copy_only=False).astype(np.float64)[rep]
    hi = t.column("last_ts").to_numpy(zero_copy_only=False).astype(np.float64)[rep]
    c = counts[rep]
    span = np.where(c > 1, (hi - lo) / np.maximum(c - 1, 1), 0.0)
    ts = (lo + k * span) / 1000.0
    order = np.argsort(ts, kind="stable")
    idx = pa.array(rep[order])
    return pa.table({"timestamp": pa.array(ts[order]), "site": t.column("site").take(idx),
                     "lfn": t.column("lfn").take(idx), "size": t.column("size").cast(pa.int64()).take(idx)}), n


# -- export -----------------------------------------------------------------------------------
def export_trace(out: str | Path, *, raw: str | Path | None = None, reduced: str | Path | None = None,
                 site: str | None = None, months: int | None = None, start: str | None = None,
                 end: str | None = None, progress: bool | None = None) -> ExportStats:
    """Write the trace CSV of ``raw`` logs (exact) or ``reduced`` tables (approximate) to ``out``."""
    import pyarrow.csv as pacsv

    if (raw is None) == (reduced is None):
        raise ExportError("give exactly one of --raw DIR or --reduced DIR")
    src = Path(reduced) if reduced is not None else None
    if raw is not None:
        if "://" not in str(raw) and not Path(raw).is_dir():
            raise ExportError(f"not a directory: {raw}")
        src = raw
        parts = raw_partitions(raw)
        first, last = window(months, start, end, latest=parts[-1][0] if parts else None)
        parts = [(d, p) for d, p in parts if (first is None or d >= first) and (last is None or d <= last)]
    else:
        if not src.is_dir():
            raise ExportError(f"not a directory: {src}")
        first, last = window(months, start, end, latest=None if months is None or end else _reduced_latest(src))
        parts = [(None, p) for p in sorted(src.rglob("*.parquet"))]
    if not parts:
        raise ExportError(f"no {'raw' if raw is not None else 'reduced'} partitions in {src}"
                          + (f" between {first} and {last}" if first or last else ""))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    records = rows = 0
    damaged: list[str] = []
    bar = _bar(len(parts), progress)
    try:
        with tmp.open("wb") as f:
            f.write((",".join(TRACE_COLUMNS) + "\n").encode())
            for _, p in parts:
                if raw is not None:
                    table, report = raw_rows(p, site)
                    n = report.records_read
                    if not report.ok:
                        damaged.append(f"{p}: {report.reason}")
                else:
                    table, n = reduced_rows(p, site, first, last)
                records += n
                rows += table.num_rows
                if table.num_rows:
                    pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False))
                bar.update(1)
        tmp.replace(out)  # a reader never sees half a trace
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)
    return ExportStats(out, len(parts), records, rows, tuple(damaged))


def _reduced_latest(src: Path) -> date | None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    latest = None
    for p in src.rglob("*.parquet"):
        try:
            d = pc.max(pq.read_table(p, columns=["day"]).column("day")).as_py()
        except (OSError, pa.ArrowInvalid, KeyError) as e:
            raise ExportError(f"cannot read reduced partition {p}: {e}") from e
        latest = d if latest is None or (d is not None and d > latest) else latest
    return latest


def _bar(total: int, enabled: bool | None):
    from tqdm import tqdm
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc="export", unit="part", file=sys.stderr, disable=not enabled, leave=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.reduce.trace", description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--raw", type=Path)
    src.add_argument("--reduced", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--site")
    ap.add_argument("--months", type=int)
    ap.add_argument("--start")
    ap.add_argument("--end")
    args = ap.parse_args(argv)
    try:
        s = export_trace(args.out, raw=args.raw, reduced=args.reduced, site=args.site, months=args.months,
                         start=args.start, end=args.end)
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(s.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
