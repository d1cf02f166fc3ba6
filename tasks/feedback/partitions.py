"""The feedback partitions the inference service writes (``inference/feedback.py``), read back as a trace.

Layout: ``<data_root>/feedback/site=<SITE>/day=<YYYY-MM-DD>/part-*.parquet`` with the columns of
:data:`SCHEMA`; each day's folder is the catalog dataset ``feedback/<SITE>/<day>`` (kind ``feedback``).
:func:`read_feedback` scans a folder tree (``smartcache export trace --feedback``); :func:`read_days` reads
the day folders the catalog names (the retrain workflow's export node).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

KIND = "feedback"
SCHEMA = pa.schema([("timestamp", pa.float64()), ("site", pa.string()), ("lfn", pa.string()),
                    ("size", pa.int64()), ("source", pa.string()), ("score", pa.float32()), ("model", pa.string())])


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).date().isoformat()


def partition_dir(root: Path, site: str, day: str) -> Path:
    return root / f"site={site}" / f"day={day}"


def describe(folder: Path) -> dict:
    """Rows, parts and time span of one day's partition, from the parts' footers."""
    parts = sorted(folder.glob("part-*.parquet"))
    rows = 0
    for p in parts:
        try:
            rows += pq.ParquetFile(p).metadata.num_rows
        except (OSError, pa.ArrowInvalid):
            continue
    return {"parts": len(parts), "rows": rows, "bytes": sum(p.stat().st_size for p in parts)}


def read_days(folders: Iterable[Path | str]) -> pa.Table:
    """The accesses of the given day folders, in time order (an absent or empty folder adds nothing)."""
    tables = []
    for folder in folders:
        for part in sorted(Path(folder).glob("part-*.parquet")):
            try:
                tables.append(pq.read_table(part, schema=SCHEMA))
            except (OSError, pa.ArrowInvalid) as e:
                from smartcache.catalog.errors import Invalid
                raise Invalid(f"feedback part {part} cannot be read: {str(e).splitlines()[0]}") from e
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by([("timestamp", "ascending")])


def write_trace(table: pa.Table, out: Path | str) -> Path:
    """The accesses as a trace CSV (``timestamp,site,lfn,size``), written aside and renamed into place."""
    import pyarrow.csv as pacsv

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    try:
        with tmp.open("wb") as f:
            f.write(b"timestamp,site,lfn,size\n")
            pacsv.write_csv(table.select(["timestamp", "site", "lfn", "size"]), f,
                            pacsv.WriteOptions(include_header=False))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def read_feedback(root: Path | str, site: str | None = None, first: str | None = None, last: str | None = None
                  ) -> pa.Table:
    """The accesses of the partitions (optionally one site, days ``first``..``last``), in time order."""
    root = Path(root)
    tables = []
    for folder in sorted(root.glob("site=*/day=*")):
        s, d = folder.parent.name[5:], folder.name[4:]
        if (site and s != site) or (first and d < first) or (last and d > last):
            continue
        for p in sorted(folder.glob("part-*.parquet")):
            tables.append(pq.read_table(p, schema=SCHEMA))
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by([("timestamp", "ascending")])


def export_feedback(out: Path | str, root: Path | str, *, site: str | None = None, first: str | None = None,
                    last: str | None = None) -> tuple[Path, int, int]:
    """Write the feedback of ``root`` as a trace CSV (``timestamp,site,lfn,size``); (path, rows, days)."""
    from smartcache.catalog.errors import NotFound
    root = Path(root)
    table = read_feedback(root, site, first, last)
    if table.num_rows == 0:
        raise NotFound(f"no feedback under {root}" + (f" for site {site}" if site else "")
                       + (f" between {first or '...'} and {last or '...'}" if first or last else ""))
    days = len({day_of(t) for t in (table.column("timestamp")[0].as_py(), table.column("timestamp")[-1].as_py())})
    return write_trace(table, out), table.num_rows, days
