"""Hindsight: what the optimal policy knew about every request of a trace.

- :func:`next_gap`: seconds until the same file is read again at the same site (``inf`` if never in
  the trace) -- the quantity Belady's policy evicts by;
- :func:`reuse_bytes`: the distinct bytes of other files read at the site before that next read (the
  byte stack distance: an LRU cache at least this big would have hit it);
- :func:`belady_kept`: whether Belady's policy, replayed exactly at a cache size, kept the file until
  its next read (its next request is a hit) -- Parrot's imitation target and LRB's "within the Belady
  boundary" label;
- :func:`gap_buckets`: the next gap as a class over log-spaced time buckets, with right-censoring: a
  request too close to the end of the known window for its next read to be seen gets the set of buckets
  still possible (a multi-hot mask), which the trainer's likelihood sums over.
"""

from __future__ import annotations

import numpy as np

from smartcache.tasks.common.nextgap import GAP_EDGES, N_CLASSES  # noqa: F401 - the classes it labels
from smartcache.tasks.common.trace import Trace
from smartcache.tasks.simulate import kernels as K

try:
    from numba import njit
except ImportError:  # pragma: no cover
    def njit(*args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda f: f)



def site_file_ids(trace: Trace) -> np.ndarray:
    """One id per (site, file): the unit whose next read matters (each site has its own cache)."""
    return trace.obj * max(len(trace.sites), 1) + trace.site.astype(np.int64)


def next_index(trace: Trace) -> np.ndarray:
    """Index of the next request of the same file at the same site (``kernels.NEVER`` if none)."""
    return K.next_access(site_file_ids(trace))


def next_gap(trace: Trace, nxt: np.ndarray | None = None) -> np.ndarray:
    """Seconds to the next read of the same file at the same site; ``inf`` when there is none."""
    nxt = next_index(trace) if nxt is None else nxt
    has = nxt != K.NEVER
    gap = np.full(len(trace), np.inf)
    gap[has] = trace.ts[nxt[has]] - trace.ts[has]
    return gap


@njit(cache=True, nogil=True)
def _stack_bytes(ids, size, nxt, out):
    # Fenwick tree over request positions: position j holds the size of its file while j is that file's
    # latest request so far; the distinct bytes between i and nxt[i] are a range sum at time nxt[i].
    n = ids.shape[0]
    tree = np.zeros(n + 1, np.int64)
    last = np.full(ids.max() + 1 if n else 1, -1, np.int64)
    pending = np.full(n, -1, np.int64)        # pending[j] = i when nxt[i] == j
    for i in range(n):
        if nxt[i] >= 0 and nxt[i] < n:
            pending[nxt[i]] = i
    for j in range(n):
        o = ids[j]
        i = pending[j]
        if i >= 0:  # distinct bytes of other files read in (i, j): sum over positions i+1 .. j-1
            s = 0
            k = j
            while k > 0:
                s += tree[k]
                k -= k & -k
            k = i + 1
            while k > 0:
                s -= tree[k]
                k -= k & -k
            out[i] = s
        p = last[o]
        if p >= 0:   # the file's previous position stops counting
            k = p + 1
            while k <= n:
                tree[k] -= size[p]
                k += k & -k
        k = j + 1
        while k <= n:
            tree[k] += size[j]
            k += k & -k
        last[o] = j


def reuse_bytes(trace: Trace, nxt: np.ndarray | None = None) -> np.ndarray:
    """Distinct bytes of other files read at the site between a request and its file's next read (-1: none)."""
    nxt = next_index(trace) if nxt is None else nxt
    out = np.full(len(trace), -1, np.int64)
    if len(trace) == 0:
        return out
    order = np.argsort(trace.site, kind="stable")          # each site on its own
    ids = site_file_ids(trace)
    for s in np.unique(trace.site):
        idx = order[trace.site[order] == s]
        pos = np.full(len(trace), -1, np.int64)
        pos[idx] = np.arange(len(idx))
        local_nxt = np.where(nxt[idx] == K.NEVER, -1, pos[np.minimum(nxt[idx], len(trace) - 1)])
        sub = np.full(len(idx), -1, np.int64)
        _stack_bytes(np.unique(ids[idx], return_inverse=True)[1].astype(np.int64), trace.size[idx],
                     local_nxt.astype(np.int64), sub)
        out[idx] = sub
    return out


def belady_kept(trace: Trace, capacity: int, nxt: np.ndarray | None = None) -> np.ndarray:
    """True where Belady (replayed at ``capacity``) keeps the file until its next read at the site."""
    kept = np.zeros(len(trace), bool)
    nxt = next_index(trace) if nxt is None else nxt
    for s in np.unique(trace.site):
        idx = np.flatnonzero(trace.site == s)
        sub = trace.take(idx)
        status = np.empty(len(sub), np.int8)
        local = K.next_access(sub.obj)
        K.belady_kernel(sub.obj, sub.size, local, np.int64(capacity), max(sub.n_obj, 1), status, False)
        has = local != K.NEVER
        k = np.zeros(len(sub), bool)
        k[has] = status[local[has]] == K.HIT
        kept[idx] = k
    return kept


def gap_buckets(gap: np.ndarray, horizon: np.ndarray, edges: np.ndarray = GAP_EDGES) -> np.ndarray:
    """``[n, len(edges) + 1]`` float32 masks of the classes a next gap may be in, knowing ``horizon`` s.

    A gap seen within the horizon is one class; otherwise every class whose upper edge lies beyond the
    horizon is still possible (the last class, "later or never", always is).
    """
    n, c = len(gap), len(edges) + 1
    mask = np.zeros((n, c), np.float32)
    seen = gap <= horizon
    cls = np.searchsorted(edges, gap[seen], side="left")
    mask[np.flatnonzero(seen), cls] = 1.0
    upper = np.append(edges, np.inf)
    mask[~seen] = (upper[None, :] > horizon[~seen, None]).astype(np.float32)
    return mask
