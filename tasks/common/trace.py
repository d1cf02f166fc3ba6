"""A request trace: the unit every part shares (``timestamp, site, lfn, size``: epoch seconds, bytes).

The CSV of ARCHITECTURE.md §5, as ``smartcache export trace`` writes it and ``simulate``/``train --trace``
read it; in memory a :class:`Trace` of dense integer object and site ids, in time order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smartcache.catalog.errors import SmartcacheError

TRACE_COLUMNS = ("timestamp", "site", "lfn", "size")
DAY = 86400


class TraceError(SmartcacheError):
    """A trace file or trace arrays are unusable."""


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trace:
    """Requests in time order. ``obj`` indexes ``lfns``; ``site`` indexes ``sites``."""

    ts: np.ndarray                    # float64 epoch seconds, non-decreasing
    obj: np.ndarray                   # int64 dense object ids
    size: np.ndarray                  # int64 bytes
    site: np.ndarray                  # int32
    sites: tuple[str, ...]
    lfns: pa.Array                    # object id -> lfn
    score: np.ndarray | None = None   # optional precomputed model scores, one per request

    def __len__(self) -> int:
        return int(self.obj.shape[0])

    @property
    def n_obj(self) -> int:
        return len(self.lfns)

    @cached_property
    def days(self) -> np.ndarray:
        """UTC day number (days since the epoch) of every request."""
        return np.floor_divide(self.ts, DAY).astype(np.int64)

    def take(self, mask_or_index: np.ndarray) -> "Trace":
        """A sub-trace; object ids stay global so that results of sub-traces are comparable."""
        return Trace(self.ts[mask_or_index], self.obj[mask_or_index], self.size[mask_or_index],
                     self.site[mask_or_index], self.sites, self.lfns,
                     None if self.score is None else self.score[mask_or_index])

    def for_site(self, name: str) -> "Trace":
        if name not in self.sites:
            raise TraceError(f"site {name!r} is not in the trace (sites: {', '.join(self.sites) or 'none'})")
        return self.take(self.site == self.sites.index(name))

    def site_names(self) -> list[str]:
        """Sites that have at least one request, in name order."""
        present = np.unique(self.site)
        return sorted(self.sites[i] for i in present)

    def working_set(self) -> int:
        """Bytes of the distinct objects requested (each at its largest requested size)."""
        if len(self) == 0:
            return 0
        biggest = np.zeros(self.n_obj, np.int64)
        np.maximum.at(biggest, self.obj, self.size)
        return int(biggest.sum())

    def table(self) -> pa.Table:
        """The requests as ``timestamp, site, lfn, size`` (what a scorer receives)."""
        return pa.table({
            "timestamp": pa.array(self.ts, pa.float64()),
            "site": pa.DictionaryArray.from_arrays(pa.array(self.site, pa.int32()),
                                                   pa.array(self.sites, pa.string())).cast(pa.string()),
            "lfn": self.lfns.take(pa.array(self.obj)),
            "size": pa.array(self.size, pa.int64()),
        })


def make_trace(timestamps: Sequence[float] | np.ndarray, lfns: Sequence[str] | pa.Array,
               sizes: Sequence[int] | np.ndarray, sites: Sequence[str] | pa.Array | str = "site",
               scores: Sequence[float] | np.ndarray | None = None) -> Trace:
    """Build a :class:`Trace` from columns (sorted by time, stable for equal timestamps)."""
    n = len(timestamps)
    site_col = [sites] * n if isinstance(sites, str) else sites
    cols = {"timestamp": pa.array(np.asarray(timestamps, np.float64)), "site": pa.array(site_col, pa.string()),
            "lfn": pa.array(lfns, pa.string()), "size": pa.array(np.asarray(sizes, np.int64))}
    if scores is not None:
        cols["score"] = pa.array(np.asarray(scores, np.float64))
    if len({len(c) for c in cols.values()}) != 1:
        raise TraceError("trace columns have different lengths")
    return trace_from_table(pa.table(cols), source="arrays")


def trace_from_table(table: pa.Table, source: str = "trace") -> Trace:
    """Validate and encode a table with at least ``timestamp, site, lfn, size``."""
    missing = [c for c in TRACE_COLUMNS if c not in table.column_names]
    if missing:
        raise TraceError(f"{source}: trace must have columns {','.join(TRACE_COLUMNS)}; "
                         f"missing {','.join(missing)} (found: {','.join(table.column_names) or 'none'})")
    if table.num_rows == 0:
        raise TraceError(f"{source}: the trace has no requests")
    for c in (*TRACE_COLUMNS, *(["score"] if "score" in table.column_names else [])):
        nulls = table.column(c).null_count
        if nulls:
            raise TraceError(f"{source}: column {c} has {nulls} empty value(s)")
    try:
        ts = table.column("timestamp").cast(pa.float64()).to_numpy()
        size = table.column("size").cast(pa.int64()).to_numpy()
        score = table.column("score").cast(pa.float64()).to_numpy() if "score" in table.column_names else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise TraceError(f"{source}: {e}") from e
    if not np.all(np.isfinite(ts)):
        raise TraceError(f"{source}: timestamps must be finite epoch seconds")
    if (size < 0).any():
        raise TraceError(f"{source}: sizes must not be negative (row {int(np.argmax(size < 0)) + 1})")
    lfn = pc.dictionary_encode(table.column("lfn").cast(pa.string())).combine_chunks()
    site = pc.dictionary_encode(table.column("site").cast(pa.string())).combine_chunks()
    obj = lfn.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    site_idx = site.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    trace = Trace(ts, obj, size, site_idx, tuple(site.dictionary.to_pylist()), lfn.dictionary, score)
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        trace = trace.take(np.argsort(ts, kind="stable"))
    return trace


def read_trace_csv(path: str | Path) -> Trace:
    """Read a trace CSV (header ``timestamp,site,lfn,size``, optional ``score``)."""
    import pyarrow.csv as pacsv

    path = Path(path)
    if not path.is_file():
        raise TraceError(f"trace file not found: {path}")
    types = {"timestamp": pa.float64(), "site": pa.string(), "lfn": pa.string(), "size": pa.int64(),
             "score": pa.float64()}
    try:
        with path.open("rb") as f:
            first = f.readline().decode("utf-8", "replace")
        header = [h.strip().strip('"').strip() for h in first.strip().split(",")]
        missing = [c for c in TRACE_COLUMNS if c not in header]
        if missing:
            raise TraceError(f"{path}: trace CSV must have the header {','.join(TRACE_COLUMNS)} "
                             f"(missing {','.join(missing)}; found: {','.join(header)[:200]})")
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={k: v for k, v in types.items() if k in header}, strings_can_be_null=False))
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as e:
        raise TraceError(f"{path}: not a valid trace CSV: {str(e).splitlines()[0]}") from e
    return trace_from_table(table, source=str(path))


def write_trace_csv(trace: Trace, path: str | Path) -> Path:
    """Write a trace as the CSV ``simulate`` reads."""
    import pyarrow.csv as pacsv

    path = Path(path)
    with path.open("wb") as f:
        f.write((",".join(TRACE_COLUMNS) + "\n").encode())
        pacsv.write_csv(trace.table(), f, pacsv.WriteOptions(include_header=False))
    return path
