"""Past-only popularity features and forward labels from daily (site, file) access counts, in numpy.

Every window is a difference of cumulative sums over events sorted by a composite key
``group * STRIDE + day``; ``searchsorted`` finds window edges for all query rows at once, so the
cost is a few sorts and binary searches over the events (no Python loop per row).

Timing convention: features of (d, site, file) use events on days <= d (the information available
at the end of day d); labels use days d+1 .. d+H. Nothing else looks at the data: adding or changing
events after day d changes only the label columns of rows on days <= d.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smartcache.tasks.common.cms import dataset_from_lfn, site_tier, tier_code, tier_from_lfn

# The model inputs, in order. All computable from a plain trace (timestamp, site, lfn, size).
FEATURE_COLUMNS: list[str] = [
    "file_acc_1d", "file_acc_7d", "file_acc_30d",      # reads of the file at the site, days (d-w, d]
    "file_days_7d", "file_days_30d",                   # days with a read of the file at the site
    "ds_acc_1d", "ds_acc_7d", "ds_acc_30d",            # reads of the file's dataset at the site
    "ds_files_1d",                                     # distinct files of the dataset read there on d
    "ds_days_30d",                                     # days with a read of the dataset at the site
    "days_since_prev",                                 # d - last read day before d (GAP_CAP if none)
    "days_since_first",                                # d - first read day of the file at the site
    "ds_age",                                          # d - first day the dataset was read anywhere
    "log_size",                                        # log10(bytes)
    "tier_code",                                       # feat_names.TIERS index + 1 (0 unknown)
    "site_tier",                                       # 1 for T1_*, 2 for T2_* ...
]
# Extra columns: identifiers, job-field features (optional inputs) and labels.
EXTRA_COLUMNS = ["days_since_last", "users_7d", "tasks_7d", "cpu_7d", "history_complete"]
LABEL_COLUMNS = ["future_reads", "label", "label_complete"]

GAP_CAP = 366
HISTORY = 30                 # longest look-back window
STRIDE = 1 << 22             # > any day offset + horizon
_MARGIN = HISTORY + 2        # day offsets start here, so (day - window) never reaches the previous group
_EPOCH = dt.date(1970, 1, 1)


def _day_ints(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if pa.types.is_date32(col.type):
        col = col.cast(pa.int32())
    elif pa.types.is_timestamp(col.type) or pa.types.is_date64(col.type):
        col = pc.divide(col.cast(pa.int64()), 86_400_000 if pa.types.is_date64(col.type) else
                        {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}[col.type.unit])
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


def _codes(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Integer codes and the dictionary of a string column (nulls get their own code)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    return np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64), enc.dictionary


def _rank(dictionary: pa.Array) -> np.ndarray:
    """Sort rank of each dictionary value (for a deterministic output order)."""
    order = np.asarray(pc.array_sort_indices(dictionary, null_placement="at_start").to_numpy())
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _col(t: pa.Table, name: str) -> np.ndarray | None:
    if name not in t.column_names:
        return None
    return np.asarray(pc.fill_null(t[name], 0).to_numpy(), dtype=np.float64)


class _Windows:
    """Sums of named per-event values over keys in (q - w, q] or (q, q + h], for sorted event keys.

    The value ``"days"`` (one per event row) counts the days with an event.
    """

    def __init__(self, keys: np.ndarray, values: dict[str, np.ndarray]):
        self.keys = keys
        self.values = {"days": np.ones(len(keys)), **values}
        self._cums: dict[str, np.ndarray] = {}

    def _cum(self, name: str) -> np.ndarray:
        if name not in self._cums:
            self._cums[name] = np.concatenate([[0.0], np.cumsum(self.values[name], dtype=np.float64)])
        return self._cums[name]

    def past(self, q: np.ndarray, w: int, name: str) -> np.ndarray:
        c = self._cum(name)
        return c[np.searchsorted(self.keys, q, "right")] - c[np.searchsorted(self.keys, q - w, "right")]

    def future(self, q: np.ndarray, h: int, name: str) -> np.ndarray:
        c = self._cum(name)
        return c[np.searchsorted(self.keys, q + h, "right")] - c[np.searchsorted(self.keys, q, "right")]


def compute_features(events: pa.Table, horizon: int = 7, candidate_days: int = 1,
                     days_present: Iterable[int | dt.date] | None = None,
                     site_order: list[str] | None = None) -> pa.Table:
    """Feature rows for every (day, site, file) candidate; see the module doc for the timing rule.

    ``events``: one row per read day of a file at a site, with ``day`` (date32 or int days),
    ``site``, ``lfn``, ``n_access`` and optionally ``size``, ``dataset``, ``n_users``, ``n_tasks``,
    ``cpu_s`` (duplicates of a (day, site, lfn) are summed). Candidates are the files read at the
    site on day d, or within the last ``candidate_days`` days. ``days_present`` lists the days that
    have data (default: every day from the first to the last event); a day missing inside a horizon
    makes ``label_complete`` false. ``site_order`` fixes site codes (default: by first day seen,
    then name, so codes of early sites never change when later data arrive).
    """
    if horizon < 1 or candidate_days < 1:
        raise ValueError("horizon and candidate_days must be >= 1")
    if events.num_rows == 0:
        return _empty()
    day = _day_ints(events["day"])
    d0 = int(day.min())
    off = day - d0 + _MARGIN
    site_c, site_dict = _codes(events["site"])
    lfn_c, lfn_dict = _codes(events["lfn"])
    combo = site_c * len(lfn_dict) + lfn_c
    keys = combo * STRIDE + off
    src = np.argsort(keys, kind="stable")                  # event row -> row of ``events``
    keys, combo, off, site_c, lfn_c = keys[src], combo[src], off[src], site_c[src], lfn_c[src]
    n = _col(events, "n_access")[src]
    size = (_col(events, "size") if "size" in events.column_names else np.zeros(len(keys)))[src]
    extra = {k: v[src] for k in ("n_users", "n_tasks", "cpu_s") if (v := _col(events, k)) is not None}
    # duplicates of a (site, file, day): sum them (reads) and keep the largest size
    uniq = np.concatenate([[True], keys[1:] != keys[:-1]])
    if not uniq.all():
        starts = np.flatnonzero(uniq)
        n = np.add.reduceat(n, starts)
        size = np.maximum.reduceat(size, starts)
        extra = {k: np.add.reduceat(v, starts) for k, v in extra.items()}
        keys, combo, off, site_c, lfn_c, src = (a[starts] for a in (keys, combo, off, site_c, lfn_c, src))

    # query rows: (file, day) for the candidate days
    last_off = int(off.max())
    if candidate_days == 1:
        q, ei = keys, np.arange(len(keys))
    else:
        q = np.unique((keys[:, None] + np.arange(candidate_days)[None, :]).ravel())
        q = q[(q % STRIDE) <= last_off]
        ei = np.searchsorted(keys, q, "right") - 1          # latest event of the file at or before q
    q_off = q % STRIDE
    q_combo = combo[ei]
    win = _Windows(keys, {"n": n, **extra})
    cols: dict[str, np.ndarray] = {}
    for w in (1, 7, 30):
        cols[f"file_acc_{w}d"] = win.past(q, w, "n")
    cols["file_days_7d"] = win.past(q, 7, "days")
    cols["file_days_30d"] = win.past(q, 30, "days")
    prev = np.searchsorted(keys, q, "left") - 1
    has_prev = (prev >= 0) & (combo[np.maximum(prev, 0)] == q_combo)
    cols["days_since_prev"] = np.where(has_prev, q_off - off[np.maximum(prev, 0)], GAP_CAP).clip(max=GAP_CAP)
    first = np.searchsorted(keys, q_combo * STRIDE, "left")
    cols["days_since_first"] = q_off - off[first]
    days_since_last = q_off - off[ei]

    # dataset level: per (site, dataset) and day
    ds_key_all = dataset_from_lfn(lfn_dict)
    ds_c_of_lfn, ds_dict = _codes(ds_key_all)
    ds_c = ds_c_of_lfn[lfn_c]
    dcombo = site_c * len(ds_dict) + ds_c
    dkeys_raw = dcombo * STRIDE + off
    dkeys, inv = np.unique(dkeys_raw, return_inverse=True)
    dn = np.bincount(inv, weights=n, minlength=len(dkeys))
    dfiles = np.bincount(inv, minlength=len(dkeys)).astype(np.float64)
    dwin = _Windows(dkeys, {"n": dn, "files": dfiles})
    dq = dcombo[ei] * STRIDE + q_off
    for w in (1, 7, 30):
        cols[f"ds_acc_{w}d"] = dwin.past(dq, w, "n")
    cols["ds_files_1d"] = dwin.past(dq, 1, "files")
    cols["ds_days_30d"] = dwin.past(dq, 30, "days")
    ds_first = np.full(len(ds_dict), np.iinfo(np.int64).max)
    np.minimum.at(ds_first, ds_c, off)
    cols["ds_age"] = q_off - ds_first[ds_c[ei]]

    # labels and completeness
    future = win.future(q, horizon, "n")
    present = _present_mask(days_present, d0, last_off)
    present[np.unique(off) - _MARGIN] = True               # a day with events has data
    missing_cum = np.concatenate([[0], np.cumsum(~present)])
    d_rel = q_off - _MARGIN                              # 0 = first day of data
    span = len(present)
    hi = np.minimum(d_rel + horizon + 1, span)
    label_complete = (d_rel + horizon < span) & (missing_cum[hi] - missing_cum[np.minimum(d_rel + 1, span)] == 0)
    lo = np.maximum(d_rel - HISTORY + 1, 0)
    history_complete = (d_rel - HISTORY + 1 >= 0) & (missing_cum[d_rel + 1] - missing_cum[lo] == 0)
    cols["days_since_last"] = days_since_last
    for name, src_col in (("users_7d", "n_users"), ("tasks_7d", "n_tasks"), ("cpu_7d", "cpu_s")):
        if src_col in extra:
            cols[name] = win.past(q, 7, src_col)

    # deterministic order (day, site, lfn): permute the numbers, build each string column once
    final = np.lexsort((_rank(lfn_dict)[lfn_c[ei]], _rank(site_dict)[site_c[ei]], q_off))
    ef = ei[final]
    lfn_idx, site_idx = pa.array(lfn_c[ef]), site_c[ef]
    size_q = size[ef]
    ordered = {"log_size": np.log10(np.maximum(size_q, 1.0))}    # columns already in the final order
    tier_of_lfn = tier_from_lfn(lfn_dict)
    tier = pc.take(tier_of_lfn, lfn_idx)
    if "tier" in events.column_names and tier.null_count:
        tier = pc.coalesce(tier, events["tier"].take(pa.array(src[ef])).combine_chunks())
    ds_q = pc.take(ds_key_all, lfn_idx)
    if "dataset" in events.column_names:
        ds_q = pc.coalesce(events["dataset"].take(pa.array(src[ef])).combine_chunks(), ds_q)
    codes = _site_codes(site_dict, site_c, off, site_order)
    out = {
        "day": pa.array((q_off[final] - _MARGIN + d0).astype(np.int32)).cast(pa.date32()),
        "site": pc.take(site_dict, pa.array(site_idx)), "lfn": pc.take(lfn_dict, lfn_idx),
        "dataset": ds_q, "tier": tier, "size": pa.array(size_q.astype(np.int64)),
        "site_code": pa.array(codes[site_idx].astype(np.int32)),
    }
    ordered["tier_code"] = tier_code(tier).to_numpy(zero_copy_only=False)
    ordered["site_tier"] = site_tier(site_dict).to_numpy(zero_copy_only=False)[site_idx]
    for c in FEATURE_COLUMNS:
        out[c] = pa.array(np.asarray(ordered[c] if c in ordered else cols[c][final], dtype=np.float32))
    out["days_since_last"] = pa.array(cols["days_since_last"][final].astype(np.int32))
    for name in ("users_7d", "tasks_7d", "cpu_7d"):
        out[name] = pa.array(np.asarray(cols[name][final], dtype=np.float32)) if name in cols \
            else pa.nulls(len(q), pa.float32())
    out["history_complete"] = pa.array(history_complete[final])
    out["future_reads"] = pa.array(future[final].astype(np.int64))
    out["label"] = pa.array((future[final] > 0).astype(np.int8))
    out["label_complete"] = pa.array(label_complete[final])
    return pa.table(out)


def _present_mask(days_present, d0: int, last_off: int) -> np.ndarray:
    span = last_off - _MARGIN + 1
    if days_present is None:
        return np.ones(span, dtype=bool)
    mask = np.zeros(span, dtype=bool)
    for d in days_present:
        i = ((d - _EPOCH).days if isinstance(d, dt.date) else int(d)) - d0
        if 0 <= i < span:
            mask[i] = True
        elif i >= span:
            # a present day after the last event extends the span (empty days at the end)
            mask = np.concatenate([mask, np.zeros(i - span + 1, dtype=bool)])
            span = i + 1
            mask[i] = True
    return mask


def _site_codes(site_dict: pa.Array, site_c: np.ndarray, off: np.ndarray,
                site_order: list[str] | None) -> np.ndarray:
    names = site_dict.to_pylist()
    if site_order is not None:
        pos = {s: i for i, s in enumerate(site_order)}
        return np.array([pos.get(s, -1) for s in names], dtype=np.int64)
    first = np.full(len(names), np.iinfo(np.int64).max)
    np.minimum.at(first, site_c, off)
    ranked = sorted(range(len(names)), key=lambda i: (first[i], names[i] or ""))
    codes = np.empty(len(names), dtype=np.int64)
    codes[ranked] = np.arange(len(names))
    return codes


def site_code_map(features: pa.Table) -> dict[str, int]:
    """{site: code} as used in a feature table."""
    pairs = features.select(["site", "site_code"]).group_by(["site", "site_code"]).aggregate([])
    return {s: int(c) for s, c in zip(pairs["site"].to_pylist(), pairs["site_code"].to_pylist())}


def _empty() -> pa.Table:
    fields = [("day", pa.date32()), ("site", pa.string()), ("lfn", pa.string()), ("dataset", pa.string()),
              ("tier", pa.string()), ("size", pa.int64()), ("site_code", pa.int32())]
    fields += [(c, pa.float32()) for c in FEATURE_COLUMNS]
    fields += [("days_since_last", pa.int32()), ("users_7d", pa.float32()), ("tasks_7d", pa.float32()),
               ("cpu_7d", pa.float32()), ("history_complete", pa.bool_()), ("future_reads", pa.int64()),
               ("label", pa.int8()), ("label_complete", pa.bool_())]
    return pa.schema(fields).empty_table()
