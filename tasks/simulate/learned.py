"""The learned cache policy: evict what is predicted back last, admit only what is predicted back sooner.

The model gives, at every request, a distribution of the time until the same file is read again at the
site (class probabilities over log-spaced gaps, :data:`~smartcache.tasks.common.nextgap.GAP_EDGES`;
the last class is "later or never"), whose cumulative distribution ``F`` at the class edges the kernel
keeps for each cached file. A cached file last read ``e``
seconds ago is worth the probability that it is read again within the cache's horizon ``T``, knowing it
has not been read since: ``(F(e + T) - F(e)) / (1 - F(e))`` -- a file past the time it was expected back
loses its value, as in hindsight it would have been evicted. ``T`` is the cache's own turnover time, the
time a byte stays in it (Little's law: capacity / byte insertion rate over the last insertions), so the
value is "will it be hit before it would leave anyway": LRB's relaxed Belady boundary.

Eviction samples ``k`` cached files (a seeded xorshift generator: deterministic) and evicts the least
valuable, per byte when the goal is the byte hit ratio (a hit saves as many bytes as the file occupies,
so the value is the probability itself) or divided by the size for the object hit ratio. A miss is
stored in free space; otherwise it is admitted only if it is worth more than each file it would push out
(those files stay when it is not). ``F`` is interpolated linearly in log time between edges.
"""

from __future__ import annotations

import numpy as np

from smartcache.tasks.common.nextgap import cdf_at, cumulative, value_now  # noqa: F401 - the kernel's twins

try:
    from numba import njit
except ImportError:  # pragma: no cover
    def njit(*args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda f: f)

MISS, INSERT, HIT = 0, 1, 2
RING = 1024             # insertions the turnover time is measured over
DEFAULT_SAMPLES = 16      # measured: 8..64 samples give byte hit ratios within 0.002; cost is linear in it


@njit(cache=True, nogil=True, inline="always")
def _cdf(cdf, r, x, edges, log_edges):
    """F(x) of row ``r`` of ``cdf`` (F at the edges)."""
    if x <= 0.0:
        return 0.0
    m = edges.shape[0]
    if x <= edges[0]:
        return cdf[r, 0] * x / edges[0]
    if x >= edges[m - 1]:
        return cdf[r, m - 1]
    lx = np.log(x)
    b = 1
    while edges[b] < x:
        b += 1
    w = (lx - log_edges[b - 1]) / (log_edges[b] - log_edges[b - 1])
    return cdf[r, b - 1] + w * (cdf[r, b] - cdf[r, b - 1])


@njit(cache=True, nogil=True, inline="always")
def _value(cdf, r, e, horizon, edges, log_edges):
    f_e = _cdf(cdf, r, e, edges, log_edges)
    alive = 1.0 - f_e
    if alive <= 1e-9:
        return 0.0
    return (_cdf(cdf, r, e + horizon, edges, log_edges) - f_e) / alive


@njit(cache=True, nogil=True, inline="always")
def _set_cdf(dst, o, probs, i, m):
    acc = 0.0
    for j in range(m):
        acc += probs[i, j]
        dst[o, j] = min(acc, 1.0)


@njit(cache=True, nogil=True, inline="always")
def _xorshift(state):
    x = state[0]
    x ^= (x << np.uint64(13)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x ^= x >> np.uint64(7)
    x ^= (x << np.uint64(17)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    state[0] = x
    return x


@njit(cache=True, nogil=True)
def learned_kernel(obj, size, ts, probs, edges, capacity, n_obj, out, samples, seed, per_byte, admit, kappa,
                   used_out):
    """Replay with the learned policy; ``probs[i]`` are request i's class probabilities (see the module doc).

    ``used_out`` (length n, or 0 to skip) receives the bytes in the cache after each request.
    """
    record = used_out.shape[0] > 0
    log_edges = np.log(edges)
    m = edges.shape[0]
    # F at the edges of each cached object's latest request, kept per object: eviction samples touch
    # n_obj x m floats (cache-friendly), not the n_requests rows of ``probs``
    ocdf = np.zeros((n_obj, m), np.float32)
    new_row = np.zeros((1, m), np.float32)
    members = np.empty(n_obj, np.int64)     # cached objects, dense (sampling in O(1))
    mpos = np.full(n_obj, -1, np.int64)
    last_t = np.zeros(n_obj)
    stored = np.zeros(n_obj, np.int64)
    ring_t = np.zeros(RING)
    ring_s = np.zeros(RING)
    ring_n = 0
    ring_sum = 0.0
    n = 0
    used = 0
    rng = np.empty(1, np.uint64)
    rng[0] = np.uint64(seed) * np.uint64(2654435761) + np.uint64(88172645463325252)
    victims = np.empty(n_obj, np.int64)
    for i in range(obj.shape[0]):
        o = obj[i]
        t = ts[i]
        if mpos[o] >= 0:
            out[i] = HIT
            _set_cdf(ocdf, o, probs, i, m)
            last_t[o] = t
            if record:
                used_out[i] = used
            continue
        s = size[i]
        if s > capacity:
            out[i] = MISS
            if record:
                used_out[i] = used
            continue
        # the cache's turnover time: capacity / byte insertion rate over the last RING insertions
        horizon = 86400.0
        if ring_n >= 16:
            oldest = ring_t[(ring_n - min(ring_n, RING)) % RING]
            span = t - oldest
            if span > 0 and ring_sum > 0:
                horizon = kappa * capacity * span / ring_sum
        _set_cdf(new_row, 0, probs, i, m)
        v_new = _value(new_row, 0, 0.0, horizon, edges, log_edges)
        if not per_byte:
            v_new /= max(s, 1)
        nv = 0
        rejected = False
        while used + s > capacity:
            best = -1
            best_v = np.inf
            k = samples if samples < n else n
            for _ in range(k):
                c = members[_xorshift(rng) % np.uint64(n)]
                v = _value(ocdf, c, t - last_t[c], horizon, edges, log_edges)
                if not per_byte:
                    v /= max(stored[c], 1)
                if v < best_v or (v == best_v and last_t[c] < last_t[best]):
                    best_v = v
                    best = c
            if admit and best_v > v_new:
                rejected = True
                break
            # take the victim out (tentatively: it comes back if the newcomer is not admitted)
            p = mpos[best]
            n -= 1
            members[p] = members[n]
            mpos[members[p]] = p
            mpos[best] = -1
            used -= stored[best]
            victims[nv] = best
            nv += 1
        if rejected:
            for j in range(nv):
                v = victims[j]
                members[n] = v
                mpos[v] = n
                n += 1
                used += stored[v]
            out[i] = MISS
            if record:
                used_out[i] = used
            continue
        members[n] = o
        mpos[o] = n
        n += 1
        stored[o] = s
        used += s
        for j in range(m):
            ocdf[o, j] = new_row[0, j]
        last_t[o] = t
        slot = ring_n % RING
        if ring_n >= RING:
            ring_sum -= ring_s[slot]
        ring_t[slot] = t
        ring_s[slot] = s
        ring_sum += s
        ring_n += 1
        out[i] = INSERT
        if record:
            used_out[i] = used


def replay_learned(obj: np.ndarray, size: np.ndarray, ts: np.ndarray, probs: np.ndarray, edges: np.ndarray,
                   capacity: int, *, samples: int = DEFAULT_SAMPLES, seed: int = 0, per_byte: bool = True,
                   admit: bool = True, kappa: float = 1.0, used_out: np.ndarray | None = None) -> np.ndarray:
    """Statuses (``MISS|INSERT|HIT``) of every request under the learned policy (``probs``: ``[n, C]``)."""
    out = np.empty(len(obj), np.int8)
    if len(obj) == 0:
        return out
    n_obj = int(obj.max()) + 1
    learned_kernel(np.ascontiguousarray(obj, np.int64), np.ascontiguousarray(size, np.int64),
                   np.ascontiguousarray(ts, np.float64), np.ascontiguousarray(probs, np.float32),
                   np.ascontiguousarray(edges, np.float64), np.int64(capacity), n_obj, out, int(samples),
                   int(seed), bool(per_byte), bool(admit), float(kappa),
                   np.zeros(0, np.int64) if used_out is None else used_out)
    return out

