"""Synthetic traces for tests and benchmarks (the realistic generator is ``smartcache.tasks.generate.task``).

Zipf-like popularity over files with heavy-tailed sizes around 2 GB, as in ANCHORS.md's policy table,
plus bursts: a share of requests re-read one of the recently requested files, as analysis tasks do.
"""

from __future__ import annotations

import numpy as np

from smartcache.tasks.common.trace import Trace, make_trace


def synthetic_trace(n: int, n_files: int, *, alpha: float = 0.9, days: float = 7.0, sites: tuple[str, ...] = ("T2_IT_Pisa",),
                    burst: float = 0.3, seed: int = 0, start: float = 1_790_000_000.0,
                    kib_sizes: bool = False) -> Trace:
    """``n`` requests over ``days`` days. ``kib_sizes`` rounds sizes up to whole KiB (libCacheSim comparisons)."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, n_files + 1, dtype=np.float64)
    p = ranks ** -alpha
    p /= p.sum()
    obj = rng.choice(n_files, size=n, p=p)
    # bursts: repeat one of the last 50 requests
    reuse = np.flatnonzero(rng.random(n) < burst)
    reuse = reuse[reuse > 50]
    back = rng.integers(1, 50, size=len(reuse))
    for i, b in zip(reuse, back):   # sequential on purpose: a burst may repeat an earlier burst
        obj[i] = obj[i - b]
    sizes = np.clip(rng.lognormal(np.log(2e9), 0.6, n_files), 5e7, 2e10).astype(np.int64)
    if kib_sizes:
        sizes = (sizes + 1023) // 1024 * 1024
    ts = start + np.sort(rng.random(n)) * days * 86400.0
    site_idx = rng.integers(0, len(sites), size=n)
    names = np.array([f"/store/data/Run2026A/Synth/AOD/v1/000/{i // 1000:03d}/{i:08d}.root" for i in range(n_files)],
                     dtype=object)
    return make_trace(ts, names[obj].tolist(), sizes[obj], np.array(sites, dtype=object)[site_idx].tolist())
