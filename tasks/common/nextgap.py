"""The next-read distribution: what a next-read model predicts and how a cache values a file by it.

At each request the model gives the probabilities of classes of the time until the same file is read
again at the site: class j < len(GAP_EDGES) is "within GAP_EDGES[j] seconds (after the previous edge)",
the last class "later, or never". Its cumulative distribution F is known at the edges and taken as
linear in log time between them (linear in time below the first edge; flat beyond the last: what is
left there never comes back within any horizon). A file last read ``e`` seconds ago is worth
P(read again within ``horizon`` | not read for ``e``) = (F(e + horizon) - F(e)) / (1 - F(e)).
The simulator's kernel (``tasks/simulate/learned.py``), placement scoring and ``/decide`` all use this.
"""

from __future__ import annotations

import math

import numpy as np

HOUR, DAY = 3600.0, 86400.0
# upper edges of the next-gap classes; the last class is "later than the last edge, or never"
GAP_EDGES = np.array([600.0, HOUR, 3 * HOUR, 12 * HOUR, DAY, 2 * DAY, 4 * DAY, 8 * DAY, 16 * DAY, 32 * DAY])
N_CLASSES = len(GAP_EDGES) + 1


def cumulative(probs: np.ndarray) -> np.ndarray:
    """Class probabilities ``[n, C]`` -> the CDF at the ``C - 1`` class edges, float64, monotone."""
    c = np.cumsum(np.asarray(probs, np.float64)[:, :-1], axis=1)
    return np.ascontiguousarray(np.clip(c, 0.0, 1.0))


def cdf_at(cdf: np.ndarray, x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Vectorised :func:`_cdf`: row i's F at ``x[i]`` seconds (linear in log time between edges)."""
    cdf, x = np.asarray(cdf, np.float64), np.asarray(x, np.float64)
    n, m = cdf.shape
    out = np.zeros(n)
    rows = np.arange(n)
    low = (x > 0) & (x <= edges[0])
    out[low] = cdf[low, 0] * x[low] / edges[0]
    high = x >= edges[-1]
    out[high] = cdf[high, m - 1]
    mid = ~low & ~high & (x > 0)
    b = np.clip(np.searchsorted(edges, x[mid], side="left"), 1, m - 1)
    le = np.log(edges)
    w = (np.log(x[mid]) - le[b - 1]) / (le[b] - le[b - 1])
    r = rows[mid]
    out[mid] = cdf[r, b - 1] + w * (cdf[r, b] - cdf[r, b - 1])
    return out


def value_now(cdf: np.ndarray, elapsed: np.ndarray, horizon: float, edges: np.ndarray) -> np.ndarray:
    """P(read again within ``horizon`` s | not read in the ``elapsed`` s since the request), per row."""
    f_e = cdf_at(cdf, elapsed, edges)
    alive = 1.0 - f_e
    f_h = cdf_at(cdf, np.asarray(elapsed, np.float64) + horizon, edges)
    return np.where(alive > 1e-9, (f_h - f_e) / np.maximum(alive, 1e-9), 0.0)


def decide_probability(probs, horizon: float, edges) -> float:
    """P(read again within ``horizon`` s) of one row of class probabilities: :func:`cdf_at` on one row, in
    plain Python (a request path: vectorised numpy costs ~100 us a call for a single row)."""
    acc, cdf = 0.0, []
    for p in (probs.tolist() if isinstance(probs, np.ndarray) else list(probs))[: len(edges)]:
        acc += float(p)
        cdf.append(min(max(acc, 0.0), 1.0))
    x = float(horizon)
    if x <= 0.0:
        return 0.0
    if x <= edges[0]:
        return cdf[0] * x / edges[0]
    if x >= edges[-1]:
        return cdf[-1]
    b = 1
    while edges[b] < x:
        b += 1
    w = (math.log(x) - math.log(edges[b - 1])) / (math.log(edges[b]) - math.log(edges[b - 1]))
    return cdf[b - 1] + w * (cdf[b] - cdf[b - 1])
