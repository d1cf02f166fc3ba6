"""Per-request features of a plain trace, for simulators and online scoring.

The feature table gives one row per (day, site, file) with what is known at the *end* of the day.
A cache deciding at each request may only use what happened up to that request. Here every request
gets the same :data:`FEATURE_COLUMNS`, evaluated at its own time: the past days' windows plus the
reads of *today so far* (this one included). For the last read of a file at a site on a day, the
file-level features equal that day's feature-table row; dataset-level counts of the current day
are the day's counts up to that moment. Nothing after a request changes its features.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smartcache.tasks.common.cms import dataset_from_lfn, site_tier, tier_code, tier_from_lfn
from smartcache.tasks.features.daily import _MARGIN, FEATURE_COLUMNS, GAP_CAP, STRIDE, _codes, _site_codes, _Windows

MS_PER_DAY = 86_400_000


def timestamps_ms(ts: pa.ChunkedArray | pa.Array, unit: str = "auto") -> np.ndarray:
    """Epoch milliseconds from a timestamp column.

    ``unit='auto'``: Arrow timestamps by their type; floating point = seconds (the simulator's
    convention); integers = milliseconds when above 1e11 (after 1973), else seconds.
    """
    if pa.types.is_timestamp(ts.type):
        return np.asarray(pc.cast(ts, pa.timestamp("ms")).cast(pa.int64()).to_numpy(zero_copy_only=False),
                          dtype=np.int64)
    v = np.asarray(pc.fill_null(ts, 0).to_numpy(zero_copy_only=False))
    if unit == "auto":
        unit = "s" if v.dtype.kind == "f" or (len(v) and np.nanmax(np.abs(v)) < 1e11) else "ms"
    scale = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}[unit]
    return np.floor(v.astype(np.float64) * scale).astype(np.int64)


def _group_rank(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted ``keys``: 1-based position inside each run of equal keys, and the run starts."""
    new = np.concatenate([[True], keys[1:] != keys[:-1]])
    starts = np.flatnonzero(new)
    run = np.cumsum(new) - 1
    return np.arange(len(keys)) - starts[run] + 1, starts


def request_features(trace: pa.Table, ts_unit: str = "auto", site_order: list[str] | None = None) -> pa.Table:
    """FEATURE_COLUMNS (float32) for every request of ``trace`` (``timestamp, site, lfn[, size]``), in its order."""
    n_req = trace.num_rows
    if n_req == 0:
        return pa.table({c: pa.array([], pa.float32()) for c in FEATURE_COLUMNS})
    ts = timestamps_ms(trace["timestamp"], ts_unit)
    day = np.floor_divide(ts, MS_PER_DAY)
    d0 = int(day.min())
    off = day - d0 + _MARGIN
    site_c, site_dict = _codes(trace["site"])
    lfn_c, lfn_dict = _codes(trace["lfn"])
    combo = site_c * len(lfn_dict) + lfn_c
    key = combo * STRIDE + off
    order = np.lexsort((np.arange(n_req), ts, key))       # by file, day, time (stable)
    k = key[order]
    rank, starts = _group_rank(k)                         # reads of the file so far today
    ek = k[starts]                                        # daily events of (site, file)
    en = np.diff(np.append(starts, len(k))).astype(np.float64)
    win = _Windows(ek, {"n": en})
    cols: dict[str, np.ndarray] = {}
    for w in (1, 7, 30):
        cols[f"file_acc_{w}d"] = win.past(k - 1, w - 1, "n") + rank
    cols["file_days_7d"] = win.past(k - 1, 6, "days") + 1
    cols["file_days_30d"] = win.past(k - 1, 29, "days") + 1
    ecombo = ek // STRIDE
    prev = np.searchsorted(ek, k, "left") - 1
    has_prev = (prev >= 0) & (ecombo[np.maximum(prev, 0)] == k // STRIDE)
    k_off = k % STRIDE
    cols["days_since_prev"] = np.where(has_prev, k_off - ek[np.maximum(prev, 0)] % STRIDE, GAP_CAP).clip(max=GAP_CAP)
    cols["days_since_first"] = k_off - ek[np.searchsorted(ek, (k // STRIDE) * STRIDE, "left")] % STRIDE

    # dataset level, at the site: today's reads and distinct files so far, plus past days
    ds_of_lfn, ds_dict = _codes(dataset_from_lfn(lfn_dict))
    ds_c = ds_of_lfn[lfn_c]
    dkey = (site_c * len(ds_dict) + ds_c) * STRIDE + off
    dorder = np.lexsort((np.arange(n_req), ts, dkey))
    dk = dkey[dorder]
    drank, dstarts = _group_rank(dk)
    first_today = np.zeros(n_req, dtype=bool)
    first_today[order[starts]] = True                     # the first read of a file at the site that day
    files_cum = np.cumsum(first_today[dorder])
    group_base = np.repeat(files_cum[dstarts] - first_today[dorder][dstarts], np.diff(np.append(dstarts, n_req)))
    dfiles_so_far = files_cum - group_base
    dek = dk[dstarts]
    den = np.diff(np.append(dstarts, n_req)).astype(np.float64)
    dwin = _Windows(dek, {"n": den})
    ds_cols = {f"ds_acc_{w}d": dwin.past(dk - 1, w - 1, "n") + drank for w in (1, 7, 30)}
    ds_cols["ds_files_1d"] = dfiles_so_far.astype(np.float64)
    ds_cols["ds_days_30d"] = dwin.past(dk - 1, 29, "days") + 1
    ds_first = np.full(len(ds_dict), np.iinfo(np.int64).max)
    np.minimum.at(ds_first, ds_c, off)

    out = np.empty((len(FEATURE_COLUMNS), n_req), dtype=np.float32)
    idx = {c: i for i, c in enumerate(FEATURE_COLUMNS)}
    for c, v in cols.items():
        out[idx[c], order] = v
    for c, v in ds_cols.items():
        out[idx[c], dorder] = v
    out[idx["ds_age"]] = off - ds_first[ds_c]
    size = (np.asarray(pc.fill_null(trace["size"], 0).to_numpy(zero_copy_only=False), dtype=np.float64)
            if "size" in trace.column_names else np.zeros(n_req))
    out[idx["log_size"]] = np.log10(np.maximum(size, 1.0))
    out[idx["tier_code"]] = tier_code(tier_from_lfn(trace["lfn"])).to_numpy(zero_copy_only=False)
    out[idx["site_tier"]] = site_tier(trace["site"]).to_numpy(zero_copy_only=False)
    table = pa.table({c: out[i] for c, i in idx.items()})
    codes = _site_codes(site_dict, site_c, off, site_order)
    return table.append_column("site_code", pa.array(codes[site_c].astype(np.int32)))


def trace_feature_matrix(trace: pa.Table, input_features: Sequence[str] | None = None,
                         ts_unit: str = "auto") -> np.ndarray:
    """float32 ``[n_requests, n_features]`` of per-request features, columns in ``input_features`` order."""
    feats = list(input_features or FEATURE_COLUMNS)
    table = request_features(trace, ts_unit)
    unknown = [f for f in feats if f not in table.column_names]
    if unknown:
        raise ValueError(f"features not computable from a trace: {', '.join(unknown)}")
    return np.column_stack([table[f].to_numpy().astype(np.float32) for f in feats]) if feats else \
        np.zeros((trace.num_rows, 0), np.float32)
