"""A small synthetic feature table with a real access process behind it, for the train/score tests.

Files appear over time with a popularity that decays (as datasets do); each day a file is read a
Poisson number of times at its site. Features are past-only counts, as ``tasks/features`` computes them;
the label is "read again within the horizon". The columns stand in for ``FEATURE_COLUMNS`` so that the
train and score tests do not depend on the feature step's exact choice of features.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = ["n_access_1d", "n_access_7d", "n_access_30d", "days_since_last", "age_days", "size"]
SITES = ("T2_IT_Pisa", "T2_IT_Bari")
START = date(2026, 1, 1)
GB = 10**9


def synthetic_features(path: Path, *, n_files: int = 3000, n_days: int = 40, horizon: int = 7,
                       seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    birth = rng.integers(-20, n_days - 5, n_files)
    base = rng.lognormal(-1.5, 1.2, n_files)
    tau = rng.uniform(3, 20, n_files)
    size = np.clip(rng.lognormal(np.log(2 * GB), 0.6, n_files), 0.3 * GB, 8 * GB).astype(np.int64)
    site = rng.integers(0, len(SITES), n_files)
    days = np.arange(-30, n_days + horizon)
    age = days[None, :] - birth[:, None]
    rate = np.where(age >= 0, base[:, None] * np.exp(-np.maximum(age, 0) / tau[:, None]), 0.0)
    counts = rng.poisson(rate)
    cum = np.concatenate([np.zeros((n_files, 1), np.int64), np.cumsum(counts, axis=1)], axis=1)
    cols = {k: [] for k in ["day", "site", "lfn", *COLUMNS, "label"]}
    lfn = np.array([f"/store/data/Run2026A/P{i % 37}/AOD/v1/000/{i:05d}/{i:08x}.root" for i in range(n_files)])
    last = np.full(n_files, -10**6)
    for j in range(30):
        last = np.where(counts[:, j] > 0, j, last)
    for d in range(n_days + horizon):
        j = d + 30                                              # column of day d in counts
        last = np.where(counts[:, j] > 0, j, last)
        a1, a7, a30 = counts[:, j], cum[:, j + 1] - cum[:, j - 6], cum[:, j + 1] - cum[:, j - 29]
        cand = a30 > 0
        if not cand.any():
            continue
        last_seen = j - last
        fut = cum[:, min(j + 1 + horizon, cum.shape[1] - 1)] - cum[:, j + 1]
        # rows of the last `horizon` days have no complete label window: null, as the feature step leaves them
        label_ok = d < n_days
        cols["day"] += [START + timedelta(days=d)] * int(cand.sum())
        cols["site"] += [SITES[s] for s in site[cand]]
        cols["lfn"] += list(lfn[cand])
        cols["n_access_1d"] += list(a1[cand])
        cols["n_access_7d"] += list(a7[cand])
        cols["n_access_30d"] += list(a30[cand])
        cols["days_since_last"] += list(last_seen[cand])
        cols["age_days"] += list(np.maximum(age[cand, j], 0))
        cols["size"] += list(size[cand])
        cols["label"] += list(fut[cand] > 0) if label_ok else [None] * int(cand.sum())
    table = pa.table({"day": pa.array(cols["day"], pa.date32()), "site": cols["site"], "lfn": cols["lfn"],
                      **{c: pa.array(cols[c], pa.int64() if c != "days_since_last" else pa.float64())
                         for c in COLUMNS}, "label": pa.array(cols["label"], pa.bool_())})
    pq.write_table(table, path)
    return table


def register_features(store, path: Path, name: str = "features/test", horizon: int = 7, **kw) -> str:
    table = synthetic_features(path, horizon=horizon, **kw)
    store.register_dataset(name, "features", str(path), format="parquet", n_rows=table.num_rows,
                           meta={"horizon_days": horizon})
    return name
