"""Compiled replay kernels of the adaptive heuristics: ARC, S3-FIFO and SIEVE (numba).

Each kernel follows the same contract as :mod:`smartcache.tasks.simulate.kernels`: dense object ids,
per-request sizes and a capacity in one unit, and one status per request (``MISS``, ``INSERT``, ``HIT``).
They replay libCacheSim's own algorithms (``cache/eviction/ARC.c``, ``S3FIFO.c``, ``Sieve.c`` of the
version in the ``libcachesim`` 0.3.5 Python package, with that package's defaults) operation by operation,
byte sizes included, so that every request's hit or miss equals libCacheSim's:

- the loop of ``cache_get_base``: a hit changes no stored size; a miss that cannot be inserted evicts
  nothing; otherwise one victim at a time is evicted while ``used + size > capacity``, then the insert;
- every queue is libCacheSim's doubly linked list with ``head`` = newest, ``tail`` = oldest, ``nxt``
  toward the tail and ``prv`` toward the head (one pair of link arrays: an object is on one list at a time).

ARC (Megiddo and Modha, FAST 2003) as libCacheSim sizes it in bytes: T1/T2 hold data, B1/B2 are ghosts
(ids and sizes only); a ghost hit moves ``p`` by ``max(|B2|/|B1|, 1)`` (a ratio of byte counts, so ``p``
moves by about one byte per ghost hit, as there) and inserts into T2.
S3-FIFO (Yang et al., SOSP 2023), libCacheSim's 2024 version: a small FIFO of 10 % of the capacity, a
main FIFO (a CLOCK with 2-bit counters) of the rest and a ghost FIFO of 90 % of the capacity in bytes;
a file moves from small to main after 2 hits in small (``move-to-main-threshold=2``); before the first
eviction a full small queue sends newcomers to main; a file larger than the small queue is not cached.
SIEVE (Zhang et al., NSDI 2024): a FIFO with one visited bit per file and a hand that moves from the
tail toward the head, clearing bits, and evicts the first unvisited file.
"""

from __future__ import annotations

import numpy as np

from smartcache.tasks.simulate.kernels import HIT, INSERT, MISS, njit

S3FIFO_SMALL_RATIO = 0.10     # libcachesim.S3FIFO(small_size_ratio=0.1)
S3FIFO_GHOST_RATIO = 0.90     # libcachesim.S3FIFO(ghost_size_ratio=0.9)
S3FIFO_MOVE_TO_MAIN = 2       # libcachesim.S3FIFO(move_to_main_threshold=2)


# --------------------------------------------------------------------------------------------
# Intrusive doubly linked lists: heads[q] / tails[q] per list q, links prv / nxt per object, -1 = none.
@njit(cache=True, nogil=True, inline="always")
def _prepend(heads, tails, prv, nxt, q, o):
    h = heads[q]
    prv[o] = -1
    nxt[o] = h
    if h >= 0:
        prv[h] = o
    else:
        tails[q] = o
    heads[q] = o


@njit(cache=True, nogil=True, inline="always")
def _unlink(heads, tails, prv, nxt, q, o):
    p = prv[o]
    n = nxt[o]
    if p >= 0:
        nxt[p] = n
    else:
        heads[q] = n
    if n >= 0:
        prv[n] = p
    else:
        tails[q] = p
    prv[o] = -1
    nxt[o] = -1


# --------------------------------------------------------------------------------------------
# ARC. where[o]: 0 absent, 1 T1, 2 T2 (cached), 3 B1, 4 B2 (ghosts); the list id is where[o].
T1, T2, B1, B2 = 1, 2, 3, 4


@njit(cache=True, nogil=True, inline="always")
def _arc_replace(heads, tails, prv, nxt, where, stored, sz, p, in_b2):
    """libCacheSim ``_ARC_replace``: one data object goes to its ghost list. ``sz`` = [t1, t2, b1, b2]."""
    if (sz[0] > 0 and (sz[0] > p or (sz[0] == p and in_b2))) or sz[1] == 0:
        v = tails[T1]
        _unlink(heads, tails, prv, nxt, T1, v)
        _prepend(heads, tails, prv, nxt, B1, v)
        where[v] = B1
        sz[0] -= stored[v]
        sz[2] += stored[v]
    else:
        v = tails[T2]
        _unlink(heads, tails, prv, nxt, T2, v)
        _prepend(heads, tails, prv, nxt, B2, v)
        where[v] = B2
        sz[1] -= stored[v]
        sz[3] += stored[v]


@njit(cache=True, nogil=True, error_model="numpy")   # numpy: |B2| / 0 is inf (size-0 files), not an error
def arc_kernel(obj, size, capacity, n_obj, out):
    """libCacheSim ``ARC``: see the module docstring."""
    prv = np.full(n_obj, -1, np.int64)
    nxt = np.full(n_obj, -1, np.int64)
    where = np.zeros(n_obj, np.int8)
    stored = np.zeros(n_obj, np.int64)
    heads = np.full(5, -1, np.int64)
    tails = np.full(5, -1, np.int64)
    sz = np.zeros(4, np.int64)          # bytes in T1, T2, B1, B2
    p = 0.0
    in_b1 = False                       # libCacheSim's curr_obj_in_L1_ghost / _L2_ghost: they outlive a
    in_b2 = False                       # request whose ghost hit was not inserted, and cond3 reads in_b2
    ghost_vtime = -1
    for i in range(obj.shape[0]):
        o = obj[i]
        w = where[o]
        if w == T1 or w == T2:
            out[i] = HIT
            in_b1 = False
            in_b2 = False
            _unlink(heads, tails, prv, nxt, w, o)
            _prepend(heads, tails, prv, nxt, T2, o)
            if w == T1:
                where[o] = T2
                sz[0] -= stored[o]
                sz[1] += stored[o]
            continue
        if w == B1 or w == B2:
            in_b1 = w == B1
            in_b2 = w == B2
            ghost_vtime = i
            if w == B1:
                ratio = sz[3] / sz[2]
                p = min(p + (ratio if ratio > 1.0 else 1.0), float(capacity))
                sz[2] -= stored[o]
            else:
                ratio = sz[2] / sz[3]
                p = max(p - (ratio if ratio > 1.0 else 1.0), 0.0)
                sz[3] -= stored[o]
            _unlink(heads, tails, prv, nxt, w, o)
            where[o] = 0
        s = size[i]
        if s > capacity:
            out[i] = MISS
            continue
        from_ghost = ghost_vtime == i and (in_b1 or in_b2)
        while sz[0] + sz[1] + s > capacity:
            if from_ghost:
                _arc_replace(heads, tails, prv, nxt, where, stored, sz, p, in_b2)
            elif sz[0] + sz[2] + s > capacity:       # case IV A: |T1| + |B1| would exceed c
                if sz[2] > 0:
                    v = tails[B1]
                    _unlink(heads, tails, prv, nxt, B1, v)
                    where[v] = 0
                    sz[2] -= stored[v]
                    _arc_replace(heads, tails, prv, nxt, where, stored, sz, p, in_b2)
                else:                                 # T1 alone is too large: drop its LRU, no ghost
                    v = tails[T1]
                    _unlink(heads, tails, prv, nxt, T1, v)
                    where[v] = 0
                    sz[0] -= stored[v]
            else:                                     # case IV B
                if sz[0] + sz[1] + sz[2] + sz[3] >= 2 * capacity and sz[3] > 0:
                    v = tails[B2]
                    _unlink(heads, tails, prv, nxt, B2, v)
                    where[v] = 0
                    sz[3] -= stored[v]
                _arc_replace(heads, tails, prv, nxt, where, stored, sz, p, in_b2)
        stored[o] = s
        if from_ghost:
            _prepend(heads, tails, prv, nxt, T2, o)
            where[o] = T2
            sz[1] += s
            in_b1 = False
            in_b2 = False
            ghost_vtime = -1
        else:
            _prepend(heads, tails, prv, nxt, T1, o)
            where[o] = T1
            sz[0] += s
        out[i] = INSERT


# --------------------------------------------------------------------------------------------
# S3-FIFO. where[o]: 0 absent, 1 small, 2 main (cached), 3 ghost; the list id is where[o].
SMALL, MAIN, GHOST = 1, 2, 3


@njit(cache=True, nogil=True, inline="always")
def _s3_ghost_add(heads, tails, prv, nxt, where, stored, sz, ghost_cap, v):
    """The ghost FIFO's ``get`` for an object leaving the small queue (``sz[2]`` = ghost bytes)."""
    s = stored[v]
    if ghost_cap <= 0 or s > ghost_cap:
        where[v] = 0
        return
    while sz[2] + s > ghost_cap:
        g = tails[GHOST]
        _unlink(heads, tails, prv, nxt, GHOST, g)
        where[g] = 0
        sz[2] -= stored[g]
    _prepend(heads, tails, prv, nxt, GHOST, v)
    where[v] = GHOST
    sz[2] += s


@njit(cache=True, nogil=True)
def s3fifo_kernel(obj, size, capacity, n_obj, out):
    """libCacheSim ``S3FIFO`` with the Python package's defaults: see the module docstring."""
    prv = np.full(n_obj, -1, np.int64)
    nxt = np.full(n_obj, -1, np.int64)
    where = np.zeros(n_obj, np.int8)
    freq = np.zeros(n_obj, np.int64)
    stored = np.zeros(n_obj, np.int64)
    heads = np.full(4, -1, np.int64)
    tails = np.full(4, -1, np.int64)
    sz = np.zeros(3, np.int64)                         # bytes in small, main, ghost
    small_cap = np.int64(capacity * S3FIFO_SMALL_RATIO)   # C: (int64_t)(double(size) * ratio)
    main_cap = capacity - small_cap
    ghost_cap = np.int64(capacity * S3FIFO_GHOST_RATIO)
    has_evicted = False
    for i in range(obj.shape[0]):
        o = obj[i]
        w = where[o]
        if w == SMALL or w == MAIN:
            out[i] = HIT
            freq[o] += 1
            continue
        hit_on_ghost = w == GHOST
        if hit_on_ghost:                               # the ghost entry goes whatever happens next
            _unlink(heads, tails, prv, nxt, GHOST, o)
            where[o] = 0
            sz[2] -= stored[o]
        s = size[i]
        if s > small_cap or s > capacity:
            out[i] = MISS
            continue
        while sz[0] + sz[1] + s > capacity:
            has_evicted = True
            if sz[1] > main_cap or sz[0] == 0:        # evict from main: a CLOCK over a FIFO
                while sz[1] > 0:
                    v = tails[MAIN]
                    _unlink(heads, tails, prv, nxt, MAIN, v)
                    f = freq[v]
                    if f >= 1:
                        _prepend(heads, tails, prv, nxt, MAIN, v)
                        freq[v] = min(f, 3) - 1
                    else:
                        where[v] = 0
                        sz[1] -= stored[v]
                        break
            else:                                      # evict from small: hot files move to main
                while sz[0] > 0:
                    v = tails[SMALL]
                    _unlink(heads, tails, prv, nxt, SMALL, v)
                    sz[0] -= stored[v]
                    if freq[v] >= S3FIFO_MOVE_TO_MAIN:
                        _prepend(heads, tails, prv, nxt, MAIN, v)
                        where[v] = MAIN
                        freq[v] = 0
                        sz[1] += stored[v]
                    else:
                        _s3_ghost_add(heads, tails, prv, nxt, where, stored, sz, ghost_cap, v)
                        break
        if hit_on_ghost:
            q = MAIN
        elif s >= small_cap:                           # room was made, yet it is not stored (as there)
            out[i] = MISS
            continue
        elif not has_evicted and sz[0] >= small_cap:   # filling up: a full small queue sends to main
            q = MAIN
        else:
            q = SMALL
        _prepend(heads, tails, prv, nxt, q, o)
        where[o] = q
        freq[o] = 0
        stored[o] = s
        sz[q - 1] += s
        out[i] = INSERT


# --------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def sieve_kernel(obj, size, capacity, n_obj, out):
    """libCacheSim ``Sieve``: see the module docstring."""
    prv = np.full(n_obj, -1, np.int64)
    nxt = np.full(n_obj, -1, np.int64)
    present = np.zeros(n_obj, np.bool_)
    visited = np.zeros(n_obj, np.bool_)
    stored = np.zeros(n_obj, np.int64)
    heads = np.full(1, -1, np.int64)
    tails = np.full(1, -1, np.int64)
    hand = -1
    used = 0
    for i in range(obj.shape[0]):
        o = obj[i]
        if present[o]:
            out[i] = HIT
            visited[o] = True
            continue
        s = size[i]
        if s > capacity:
            out[i] = MISS
            continue
        while used + s > capacity:
            v = hand if hand >= 0 else tails[0]
            while visited[v]:
                visited[v] = False
                v = prv[v] if prv[v] >= 0 else tails[0]
            hand = prv[v]
            _unlink(heads, tails, prv, nxt, 0, v)
            present[v] = False
            used -= stored[v]
        _prepend(heads, tails, prv, nxt, 0, o)
        present[o] = True
        visited[o] = False
        stored[o] = s
        used += s
        out[i] = INSERT


KERNELS = {"arc": arc_kernel, "s3fifo": s3fifo_kernel, "sieve": sieve_kernel}


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel on a tiny trace."""
    obj = np.array([0, 1, 0, 2, 1], np.int64)
    size = np.array([1, 1, 1, 1, 1], np.int64)
    out = np.empty(5, np.int8)
    for kernel in KERNELS.values():
        kernel(obj, size, np.int64(20), 3, out)
