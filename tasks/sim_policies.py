"""Compiled replay kernels of the cache simulator, one per policy (numba; pure Python without it).

Every kernel replays a trace of dense integer object ids with per-request sizes (bytes, or any unit
as long as the capacity uses the same one) through a cache of ``capacity`` units and writes one status
code per request into ``out``: ``MISS`` (not stored: bypassed, not admitted or larger than the cache),
``INSERT`` (miss, stored) or ``HIT``.

Semantics follow libCacheSim's ``cache_get_base`` (so that LRU and Belady results equal its own):
- on a miss, an object whose size exceeds the capacity is never admitted and evicts nothing;
- otherwise victims are evicted while ``used + size > capacity``, then the object is inserted;
- a hit does not change the stored size, even if the request carries another size;
- no per-object metadata is charged (libCacheSim's ``consider_obj_metadata=False``).
Ties never depend on hash order: LFU, GDSF and the model policy order by (priority, time of the
object's last access), which is a strict total order; Belady reproduces libCacheSim's binary heap
operation by operation, because objects that are never requested again all share one priority and
which of them goes first changes the outcome when sizes vary.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a declared dependency; without it the kernels still run, only ~100x slower
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    def njit(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda f: f

MISS, INSERT, HIT = 0, 1, 2
NEVER = np.iinfo(np.int64).max  # next-access time of an object that is not requested again


def next_access(obj: np.ndarray) -> np.ndarray:
    """Index of the next request for the same object, ``NEVER`` if there is none (vectorised)."""
    n = len(obj)
    nxt = np.full(n, NEVER, dtype=np.int64)
    if n < 2:
        return nxt
    order = np.argsort(obj, kind="stable")          # stable: request order kept within an object
    same = obj[order[1:]] == obj[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


# --------------------------------------------------------------------------------------------
# LRU: an intrusive doubly linked list over object ids; head = least recently used.
@njit(cache=True, nogil=True)
def lru_kernel(obj, size, capacity, n_obj, out):
    prev = np.full(n_obj, -1, np.int64)
    nxt = np.full(n_obj, -1, np.int64)
    stored = np.zeros(n_obj, np.int64)
    present = np.zeros(n_obj, np.bool_)
    head = -1
    tail = -1
    used = 0
    for i in range(obj.shape[0]):
        o = obj[i]
        if present[o]:
            out[i] = HIT
            if o != tail:  # unlink and append at the MRU end
                p = prev[o]
                q = nxt[o]
                if p >= 0:
                    nxt[p] = q
                else:
                    head = q
                prev[q] = p
                prev[o] = tail
                nxt[o] = -1
                nxt[tail] = o
                tail = o
            continue
        s = size[i]
        if s > capacity:
            out[i] = MISS
            continue
        while used + s > capacity:
            v = head
            head = nxt[v]
            if head >= 0:
                prev[head] = -1
            else:
                tail = -1
            present[v] = False
            used -= stored[v]
        present[o] = True
        stored[o] = s
        used += s
        prev[o] = tail
        nxt[o] = -1
        if tail >= 0:
            nxt[tail] = o
        else:
            head = o
        tail = o
        out[i] = INSERT


# --------------------------------------------------------------------------------------------
# An indexed binary min-heap keyed by (k1 float64, k2 int64), used by LFU, GDSF and the model.
@njit(cache=True, nogil=True, inline="always")
def _less(a, b, k1, k2):
    return k1[a] < k1[b] or (k1[a] == k1[b] and k2[a] < k2[b])


@njit(cache=True, nogil=True)
def _sift_up(heap, pos, k1, k2, i):
    o = heap[i]
    while i > 0:
        p = (i - 1) >> 1
        q = heap[p]
        if not _less(o, q, k1, k2):
            break
        heap[i] = q
        pos[q] = i
        i = p
    heap[i] = o
    pos[o] = i


@njit(cache=True, nogil=True)
def _sift_down(heap, pos, k1, k2, i, n):
    o = heap[i]
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _less(heap[c + 1], heap[c], k1, k2):
            c += 1
        if not _less(heap[c], o, k1, k2):
            break
        heap[i] = heap[c]
        pos[heap[i]] = i
        i = c
    heap[i] = o
    pos[o] = i


@njit(cache=True, nogil=True)
def _heap_update(heap, pos, k1, k2, o, n):
    """Restore the heap after the keys of ``o`` (in the heap) changed."""
    i = pos[o]
    _sift_up(heap, pos, k1, k2, i)
    if pos[o] == i:
        _sift_down(heap, pos, k1, k2, i, n)


@njit(cache=True, nogil=True)
def _heap_pop(heap, pos, k1, k2, n):
    """Remove the minimum; returns it. ``n`` is the size before the pop."""
    top = heap[0]
    n -= 1
    if n > 0:
        heap[0] = heap[n]
        pos[heap[0]] = 0
        _sift_down(heap, pos, k1, k2, 0, n)
    return top


# mode of the priority kernel
LFU_MODE, GDSF_MODE, MODEL_MODE = 0, 1, 2


@njit(cache=True, nogil=True)
def priority_kernel(obj, size, capacity, n_obj, out, mode, score, threshold, aging):
    """LFU, GDSF or the model policy; evicts the lowest (priority, last access) first.

    LFU: priority = accesses since insertion (the count restarts when an object is re-inserted, as in
    libCacheSim); equal counts evict the least recently used first.
    GDSF: priority = L + freq * 1e6 / size, L = priority of the last evicted object (libCacheSim's form).
    MODEL: admit a miss only if score >= threshold; priority = score of the object's latest request,
    plus L (as in GDSF) when ``aging`` so that stale high scores eventually leave the cache.
    """
    heap = np.empty(n_obj, np.int64)
    pos = np.full(n_obj, -1, np.int64)
    k1 = np.zeros(n_obj, np.float64)
    k2 = np.zeros(n_obj, np.int64)
    freq = np.zeros(n_obj, np.int64)
    stored = np.zeros(n_obj, np.int64)
    n = 0
    used = 0
    L = 0.0
    for i in range(obj.shape[0]):
        o = obj[i]
        if pos[o] >= 0:
            out[i] = HIT
            freq[o] += 1
            if mode == LFU_MODE:
                k1[o] = freq[o]
            elif mode == GDSF_MODE:
                k1[o] = L + freq[o] * 1.0e6 / stored[o]
            else:
                k1[o] = (L if aging else 0.0) + score[i]
            k2[o] = i
            _heap_update(heap, pos, k1, k2, o, n)
            continue
        s = size[i]
        if s > capacity or (mode == MODEL_MODE and not score[i] >= threshold):
            out[i] = MISS
            continue
        while used + s > capacity:
            v = _heap_pop(heap, pos, k1, k2, n)
            n -= 1
            pos[v] = -1
            used -= stored[v]
            if mode != LFU_MODE:
                L = k1[v]
        freq[o] = 1
        stored[o] = s
        if mode == LFU_MODE:
            k1[o] = 1.0
        elif mode == GDSF_MODE:
            k1[o] = L + 1.0e6 / s
        else:
            k1[o] = (L if aging else 0.0) + score[i]
        k2[o] = i
        heap[n] = o
        pos[o] = n
        n += 1
        _sift_up(heap, pos, k1, k2, n - 1)
        used += s
        out[i] = INSERT


# --------------------------------------------------------------------------------------------
# Belady: libCacheSim's pqueue (a 1-indexed binary max-heap on the next-access time) replayed
# operation by operation, so that ties between never-again objects fall exactly as they do there.
@njit(cache=True, nogil=True)
def _pq_bubble_up(d, pos, pri, i):
    moving = d[i]
    mp = pri[moving]
    parent = i >> 1
    while i > 1 and pri[d[parent]] < mp:
        d[i] = d[parent]
        pos[d[i]] = i
        i = parent
        parent = i >> 1
    d[i] = moving
    pos[moving] = i


@njit(cache=True, nogil=True)
def _pq_maxchild(d, pri, i, qsize):
    c = i << 1
    if c >= qsize:
        return 0
    if c + 1 < qsize and pri[d[c]] < pri[d[c + 1]]:
        c += 1
    return c


@njit(cache=True, nogil=True)
def _pq_percolate_down(d, pos, pri, i, qsize):
    moving = d[i]
    mp = pri[moving]
    c = _pq_maxchild(d, pri, i, qsize)
    while c != 0 and mp < pri[d[c]]:
        d[i] = d[c]
        pos[d[i]] = i
        i = c
        c = _pq_maxchild(d, pri, i, qsize)
    d[i] = moving
    pos[moving] = i


@njit(cache=True, nogil=True)
def belady_kernel(obj, size, nxt, capacity, n_obj, out, bypass):
    """Evict the object whose next request is farthest (libCacheSim ``Belady``).

    Like libCacheSim, every miss that fits is inserted, even one never requested again, and it may
    push out objects that are: with variable sizes this is neither optimal nor the best bound
    (optimal caching with sizes is NP-hard). ``bypass`` is a stronger variant (not libCacheSim's):
    a miss is not stored when it is never requested again or when its next request is farther than
    that of every object it would have to displace.
    """
    d = np.zeros(n_obj + 1, np.int64)      # d[1..qsize-1]; qsize counts the unused slot 0, as pqueue
    pos = np.zeros(n_obj, np.int64)
    pri = np.zeros(n_obj, np.int64)
    present = np.zeros(n_obj, np.bool_)
    stored = np.zeros(n_obj, np.int64)
    qsize = 1
    used = 0
    for i in range(obj.shape[0]):
        o = obj[i]
        if present[o]:
            out[i] = HIT
            old = pri[o]
            pri[o] = nxt[i]
            if old < nxt[i]:
                _pq_bubble_up(d, pos, pri, pos[o])
            else:
                _pq_percolate_down(d, pos, pri, pos[o], qsize)
            continue
        s = size[i]
        if s > capacity or (bypass and nxt[i] == NEVER):
            out[i] = MISS
            continue
        fits = True
        while used + s > capacity:
            v = d[1]
            if bypass and pri[v] <= nxt[i]:
                fits = False
                break
            qsize -= 1
            d[1] = d[qsize]
            _pq_percolate_down(d, pos, pri, 1, qsize)
            present[v] = False
            used -= stored[v]
        if not fits:
            out[i] = MISS
            continue
        present[o] = True
        stored[o] = s
        used += s
        pri[o] = nxt[i]
        d[qsize] = o
        qsize += 1
        _pq_bubble_up(d, pos, pri, qsize - 1)
        out[i] = INSERT


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel on a tiny trace."""
    obj = np.array([0, 1, 0], np.int64)
    size = np.array([1, 1, 1], np.int64)
    out = np.empty(3, np.int8)
    lru_kernel(obj, size, 1, 2, out)
    for mode in (LFU_MODE, GDSF_MODE, MODEL_MODE):
        priority_kernel(obj, size, 1, 2, out, mode, np.ones(3), 0.5, True)
    belady_kernel(obj, size, next_access(obj), 1, 2, out, False)
