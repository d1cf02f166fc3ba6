"""The vectorised core of the reduce: filter raw batches, aggregate per (site, file), exactly.

Memory stays bounded for partitions of any size: filtered rows are aggregated into *partials*
(one row per (site, file) per slice of input, distinct job/user/task ids kept as lists), and the
partials are merged at the end -- in memory for a small day, else from disk one site at a time
(:mod:`.spill`). Distinct counts stay exact because ids are merged as sets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smartcache.tasks.common.cms import dataset_from_lfn, site_region, tier_from_dataset, tier_from_lfn
from smartcache.tasks.common.schema import REDUCED_SCHEMA
from smartcache.tasks.reduce.spill import Spill

# Drop reasons, in the order the filters apply (a record is counted under the first it fails).
DROP_REASONS = ("not_analysis", "failed", "no_size", "no_file", "no_site", "other_site")

_ALL = pc.CountOptions(mode="all")
_ID_COLS = ("job", "user", "task")


@dataclass(frozen=True)
class SiteFilter:
    """Which sites to keep: explicit names and/or a region (country code from the site name)."""

    sites: frozenset[str] | None = None
    region: frozenset[str] | None = None

    @classmethod
    def of(cls, sites: Iterable[str] | None, region: str | None) -> "SiteFilter":
        regions = frozenset(r.strip().upper() for r in region.split(",") if r.strip()) if region else None
        return cls(frozenset(sites) if sites else None, regions or None)

    @property
    def active(self) -> bool:
        return bool(self.sites or self.region)

    def allows(self, site: str) -> bool:
        if self.sites is not None and site not in self.sites:
            return False
        return self.region is None or site_region(site) in self.region


@dataclass
class Counts:
    records: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in DROP_REASONS})

    def add(self, other: "Counts") -> None:
        self.records += other.records
        self.kept += other.kept
        for k, v in other.dropped.items():
            self.dropped[k] = self.dropped.get(k, 0) + v


def _false_if_null(a) -> pa.Array:
    return pc.fill_null(a, False)


def _equals_ignore_case(col, word: str) -> pa.Array:
    """``col.lower() == word``, decided once per distinct value (utf8_lower on every row is slow)."""
    hits = [v for v in pc.unique(col).to_pylist() if v is not None and v.lower() == word]
    return pc.is_in(col, value_set=pa.array(hits, pa.string()))


def filter_batch(batch: pa.RecordBatch, sites: SiteFilter) -> tuple[pa.Table, Counts]:
    """Keep successful analysis reads of sized files at the chosen sites; project to aggregation columns.

    Success is ``SuccessFlag == 1`` (the file was read); when SuccessFlag is null the job's
    ``JobExecExitCode == 0`` decides. A job that failed *after* reading its files still counts when
    its SuccessFlag says the read succeeded: the cache saw that read.
    """
    t = pa.Table.from_batches([batch])
    counts = Counts(records=t.num_rows)
    site = t["SiteName"]
    success = pc.coalesce(pc.equal(t["SuccessFlag"], 1), pc.equal(t["JobExecExitCode"], 0))
    conds = [
        ("not_analysis", _equals_ignore_case(t["Type"], "analysis")),
        ("failed", success),
        ("no_size", pc.greater(t["FileSize"], 0)),
        ("no_file", pc.greater(pc.utf8_length(t["FileName"]), 0)),
        ("no_site", pc.greater(pc.utf8_length(site), 0)),
    ]
    if sites.active:
        allowed = [s for s in pc.unique(site).to_pylist() if s is not None and sites.allows(s)]
        conds.append(("other_site", pc.is_in(site, value_set=pa.array(allowed, pa.string()))))
    keep = None
    for reason, cond in conds:
        cond = _false_if_null(cond)
        fails = pc.invert(cond) if keep is None else pc.and_(keep, pc.invert(cond))
        counts.dropped[reason] = int(pc.sum(fails).as_py() or 0)
        keep = cond if keep is None else pc.and_(keep, cond)
    t = t.filter(keep) if keep is not None else t
    counts.kept = t.num_rows
    ts = pc.coalesce(t["StartedRunningTimeStamp"], t["FinishedTimeStamp"], t["JobExecExitTimeStamp"])
    local = pc.cast(_equals_ignore_case(t["ProtocolUsed"], "local"), pa.int64())
    out = pa.table({
        "site": t["SiteName"], "lfn": t["FileName"], "dataset": t["InputCollection"], "size": t["FileSize"],
        "ts": ts, "cpu": pc.fill_null(t["WrapCPU"], 0.0), "wall": pc.fill_null(t["WrapWC"], 0.0),
        "local": local, "job": t["JobId"], "user": t["UserId"], "task": t["TaskId"],
    })
    return out, counts


def partial_aggregate(t: pa.Table) -> pa.Table:
    """Filtered rows -> one row per (site, lfn) with sums, extremes and distinct-id lists."""
    g = t.group_by(["site", "lfn"], use_threads=False).aggregate([
        ([], "count_all"), ("size", "max"), ("dataset", "max"), ("ts", "min"), ("ts", "max"),
        ("cpu", "sum"), ("wall", "sum"), ("local", "sum"),
        ("job", "distinct", _ALL), ("user", "distinct", _ALL), ("task", "distinct", _ALL),
    ])
    return _rename(g)


_NAMES = {"count_all": "n", "size_max": "size", "dataset_max": "dataset", "cpu_sum": "cpu",
          "wall_sum": "wall", "local_sum": "local", "job_distinct": "job", "user_distinct": "user",
          "task_distinct": "task", "site_max": "site", "lfn_max": "lfn", "n_sum": "n", "ts_min_min": "ts_min",
          "ts_max_max": "ts_max"}


def _rename(g: pa.Table) -> pa.Table:
    return g.rename_columns([_NAMES.get(c, c) for c in g.column_names])


def _group_ids(t: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Sort by (site, lfn) and number the runs of equal keys 0, 1, 2, ..."""
    t = t.take(pc.sort_indices(t, [("site", "ascending"), ("lfn", "ascending")]))
    n = t.num_rows
    if n == 0:
        return t, np.zeros(0, dtype=np.int64)
    site, lfn = t["site"].combine_chunks(), t["lfn"].combine_chunks()
    changed = pc.or_(pc.not_equal(site.slice(1), site.slice(0, n - 1)),
                     pc.not_equal(lfn.slice(1), lfn.slice(0, n - 1)))
    starts = np.concatenate([[0], changed.to_numpy(zero_copy_only=False).astype(np.int64)])
    return t, np.cumsum(starts)


def merge_partials(parts: list[pa.Table]) -> pa.Table:
    """Many partials -> one, one row per (site, lfn), sorted by (site, lfn)."""
    if len(parts) == 1:       # keys are already unique: only sort
        t = parts[0]
        return t.take(pc.sort_indices(t, [("site", "ascending"), ("lfn", "ascending")]))
    t, gid = _group_ids(pa.concat_tables(parts).combine_chunks())
    t = t.append_column("gid", pa.array(gid))
    scalars = t.select(["gid", "site", "lfn", "n", "size", "dataset", "ts_min", "ts_max", "cpu", "wall", "local"])
    g = _rename(scalars.group_by("gid", use_threads=False).aggregate([
        ("site", "max"), ("lfn", "max"), ("n", "sum"), ("size", "max"), ("dataset", "max"), ("ts_min", "min"),
        ("ts_max", "max"), ("cpu", "sum"), ("wall", "sum"), ("local", "sum")]).sort_by("gid"))
    for col in _ID_COLS:
        lists = t[col].combine_chunks()
        flat = pc.list_flatten(lists)
        owner = pc.take(pa.array(gid), pc.list_parent_indices(lists))
        merged = (pa.table({"g": owner, "v": flat}).group_by("g", use_threads=False)
                  .aggregate([("v", "distinct", _ALL)]).sort_by("g"))
        g = g.append_column(col, merged["v_distinct"])
    return g.drop_columns(["gid"])


def finalize(partial: pa.Table, day: dt.date) -> pa.Table:
    """A merged partial -> the reduced partition (REDUCED_SCHEMA), sorted by (site, lfn)."""
    n = partial.num_rows
    if n == 0:
        return REDUCED_SCHEMA.empty_table()
    counts = {}
    for col in _ID_COLS:
        lists = partial[col].combine_chunks()
        valid = pc.is_valid(pc.list_flatten(lists))
        owner = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
        counts[col] = np.bincount(owner, weights=valid.to_numpy(zero_copy_only=False), minlength=n).astype(np.int64)
    lfn = partial["lfn"]
    dataset = partial["dataset"]
    if dataset.null_count:                          # InputCollection unknown: the dataset the LFN names
        dataset = pc.coalesce(dataset, dataset_from_lfn(lfn))
    tier = tier_from_dataset(partial["dataset"])
    if tier.null_count:
        tier = pc.coalesce(tier, tier_from_lfn(lfn))
    n_access = partial["n"]
    out = pa.table({
        "day": pa.array(np.full(n, (day - dt.date(1970, 1, 1)).days, dtype=np.int32)).cast(pa.date32()),
        "site": partial["site"], "lfn": lfn, "dataset": dataset, "tier": tier, "size": partial["size"],
        "n_access": n_access, "n_jobs": counts["job"], "n_users": counts["user"], "n_tasks": counts["task"],
        "cpu_s": partial["cpu"], "wall_s": partial["wall"], "first_ts": partial["ts_min"],
        "last_ts": partial["ts_max"],
        "local_frac": pc.divide(pc.cast(partial["local"], pa.float64()), pc.cast(n_access, pa.float64())),
    })
    return out.cast(REDUCED_SCHEMA)


class Aggregator:
    """Feed filtered tables; partials are formed every ``slice_rows`` rows. While they total at most
    ``max_partial_rows`` they stay in memory; past that every partial goes to disk split by site
    (:mod:`.spill`), and the result is merged one site at a time: memory stays bounded by one slice
    and one site's partials however big the day."""

    def __init__(self, slice_rows: int = 1 << 17, max_partial_rows: int = 1 << 16):
        self.slice_rows, self.max_partial_rows = slice_rows, max_partial_rows
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.partials: list[pa.Table] = []
        self.spill: Spill | None = None

    def add(self, t: pa.Table) -> None:
        # slices end at exact row counts, so sums come out bit-identical however the input was batched
        while t.num_rows:
            take = min(t.num_rows, self.slice_rows - self.pending_rows)
            self.pending.append(t.slice(0, take))
            self.pending_rows += take
            t = t.slice(take)
            if self.pending_rows >= self.slice_rows:
                self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.partials.append(partial_aggregate(pa.concat_tables(self.pending)))
            self.pending, self.pending_rows = [], 0
        if self.spill is None and sum(p.num_rows for p in self.partials) > self.max_partial_rows:
            self.spill = Spill()
        if self.spill is not None:
            for p in self.partials:
                self.spill.add(p)
            self.partials = []

    def result(self, day: dt.date) -> pa.Table:
        self._flush()
        if self.spill is not None:
            try:
                parts = [finalize(merge_partials(tables), day) for _, tables in self.spill.sites()]
            finally:
                self.spill.close()
                self.spill = None
            return pa.concat_tables(parts) if parts else REDUCED_SCHEMA.empty_table()
        if not self.partials:
            return REDUCED_SCHEMA.empty_table()
        merged = merge_partials(self.partials)   # also sorts a single partial by (site, lfn)
        return finalize(merged, day)
