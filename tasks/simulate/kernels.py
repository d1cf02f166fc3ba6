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
object's last access), a strict total order. Belady's only ties are objects never requested again;
they are always evicted before any other, so their order cannot change hits or bytes written, but the
kernel still replays libCacheSim's binary heap operation by operation, so that the cache contents
match libCacheSim's step by step, not only the counts.
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
# An indexed binary min-heap keyed by (k1 float64, k2 int64), used by LFU, GDSF and the model. The keys
# live in heap order beside the object ids (hk1, hk2, hobj) so that a sift touches contiguous memory.
@njit(cache=True, nogil=True, inline="always")
def _below(a1, a2, b1, b2):
    return a1 < b1 or (a1 == b1 and a2 < b2)


@njit(cache=True, nogil=True)
def _sift_up(hobj, hk1, hk2, pos, i):
    o, a1, a2 = hobj[i], hk1[i], hk2[i]
    while i > 0:
        p = (i - 1) >> 1
        if not _below(a1, a2, hk1[p], hk2[p]):
            break
        hobj[i], hk1[i], hk2[i] = hobj[p], hk1[p], hk2[p]
        pos[hobj[i]] = i
        i = p
    hobj[i], hk1[i], hk2[i] = o, a1, a2
    pos[o] = i
    return i


@njit(cache=True, nogil=True)
def _sift_down(hobj, hk1, hk2, pos, i, n):
    o, a1, a2 = hobj[i], hk1[i], hk2[i]
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _below(hk1[c + 1], hk2[c + 1], hk1[c], hk2[c]):
            c += 1
        if not _below(hk1[c], hk2[c], a1, a2):
            break
        hobj[i], hk1[i], hk2[i] = hobj[c], hk1[c], hk2[c]
        pos[hobj[i]] = i
        i = c
    hobj[i], hk1[i], hk2[i] = o, a1, a2
    pos[o] = i


@njit(cache=True, nogil=True)
def _heap_rekey(hobj, hk1, hk2, pos, o, a1, a2, n):
    """Give ``o`` (in the heap) new keys and restore the heap."""
    i = pos[o]
    hk1[i] = a1
    hk2[i] = a2
    if _sift_up(hobj, hk1, hk2, pos, i) == i:
        _sift_down(hobj, hk1, hk2, pos, i, n)


@njit(cache=True, nogil=True)
def _heap_push(hobj, hk1, hk2, pos, o, a1, a2, n):
    hobj[n], hk1[n], hk2[n] = o, a1, a2
    pos[o] = n
    _sift_up(hobj, hk1, hk2, pos, n)


@njit(cache=True, nogil=True)
def _heap_pop(hobj, hk1, hk2, pos, n):
    """Remove the minimum (``n`` = size before the pop); returns its object and k1."""
    top, top1 = hobj[0], hk1[0]
    pos[top] = -1
    n -= 1
    if n > 0:
        hobj[0], hk1[0], hk2[0] = hobj[n], hk1[n], hk2[n]
        pos[hobj[0]] = 0
        _sift_down(hobj, hk1, hk2, pos, 0, n)
    return top, top1


# mode of the priority kernel
LFU_MODE, GDSF_MODE, MODEL_MODE = 0, 1, 2


def priority_kernel(obj, size, capacity, n_obj, out, mode, score, threshold, aging):
    """LFU, GDSF or the model policy; evicts the lowest (priority, last access) first.

    The model policy takes ``score`` as one probability per request (:func:`_priority_kernel`, with
    GDSF-style aging), or as ``[n, 2]`` rows ``(p, t / decay)`` (:func:`model_decay_kernel`).
    """
    if mode == MODEL_MODE and score.ndim == 2:
        model_decay_kernel(obj, size, capacity, n_obj, out, score, threshold)
    else:
        _priority_kernel(obj, size, capacity, n_obj, out, mode, score, threshold, aging)


@njit(cache=True, nogil=True, error_model="numpy")   # numpy: 1e6 / 0 is inf for an empty file, not an error
def _priority_kernel(obj, size, capacity, n_obj, out, mode, score, threshold, aging):
    """LFU, GDSF or the model policy (one score per request); evicts the lowest (priority, last access) first.

    LFU: priority = accesses since insertion (the count restarts when an object is re-inserted, as in
    libCacheSim); equal counts evict the least recently used first.
    GDSF: priority = L + freq * 1e6 / size, L = priority of the last evicted object (libCacheSim's form:
    the newcomer is inserted first and may be the one evicted, i.e. not stored).
    MODEL: admit a miss when it fits in free space, or else only if score >= threshold (free space costs
    nothing but the write, so filtering there only loses hits); priority = score of the object's latest request
    (the model's probability that it is read again: the expected hit bytes per cached byte), plus L
    (as in GDSF) when ``aging``, so that stale high scores eventually leave the cache. Like GDSF, the
    newcomer competes with the cached objects and is not stored when it is worth least.
    """
    hobj = np.empty(n_obj, np.int64)
    hk1 = np.empty(n_obj, np.float64)
    hk2 = np.empty(n_obj, np.int64)
    pos = np.full(n_obj, -1, np.int64)
    freq = np.zeros(n_obj, np.int64)
    stored = np.zeros(n_obj, np.int64)
    base = 0.0 if mode == MODEL_MODE and not aging else 1.0  # 0: the model without aging ignores L
    n = 0
    used = 0
    L = 0.0
    for i in range(obj.shape[0]):
        o = obj[i]
        if pos[o] >= 0:
            out[i] = HIT
            freq[o] += 1
            if mode == LFU_MODE:
                key = float(freq[o])
            elif mode == GDSF_MODE:
                key = L + freq[o] * 1.0e6 / stored[o]
            else:
                key = base * L + score[i]
            _heap_rekey(hobj, hk1, hk2, pos, o, key, i, n)
            continue
        s = size[i]
        if s > capacity or (mode == MODEL_MODE and used + s > capacity and not score[i] >= threshold):
            out[i] = MISS
            continue
        if mode == LFU_MODE:  # libCacheSim's LFU: make room first, then insert
            while used + s > capacity:
                v, _ = _heap_pop(hobj, hk1, hk2, pos, n)
                n -= 1
                used -= stored[v]
        freq[o] = 1
        stored[o] = s
        if mode == LFU_MODE:
            key = 1.0
        elif mode == GDSF_MODE:
            key = L + 1.0e6 / s
        else:
            key = base * L + score[i]
        _heap_push(hobj, hk1, hk2, pos, o, key, i, n)
        n += 1
        used += s
        out[i] = INSERT
        # GDSF and the model (libCacheSim's GDSF order): insert, then evict the lowest while over
        # capacity -- the newcomer itself when it is worth least, which makes it a bypass.
        while used > capacity:
            v, L = _heap_pop(hobj, hk1, hk2, pos, n)
            n -= 1
            used -= stored[v]
            if v == o:
                out[i] = MISS


MIN_SCORE = 1e-12   # scores at or below it are worth nothing (ln 0 would be -inf for every such file alike)


@njit(cache=True, nogil=True)
def model_decay_kernel(obj, size, capacity, n_obj, out, score, threshold):
    """The model policy with time-discounted value; ``score[i] = (p, t / decay)`` of request i.

    A cached file is worth its latest p (probability of another read within the model's horizon: the
    expected hit bytes per cached byte) discounted by the time since that read, p·exp(-age/decay). The
    order of two files' values never changes as time passes, so the priority ln p + t/decay is fixed
    at the read and a heap keeps the order (ties: the older read goes first; with equal p this is LRU).
    A miss that fits in free space is stored; otherwise -- when p >= threshold -- the newcomer is inserted
    and the lowest-valued files leave while the cache is over capacity, the newcomer itself when it is
    worth least (then it was not admitted: a value comparison with the victim, as TinyLFU does).
    """
    hobj = np.empty(n_obj, np.int64)
    hk1 = np.empty(n_obj, np.float64)
    hk2 = np.empty(n_obj, np.int64)
    pos = np.full(n_obj, -1, np.int64)
    stored = np.zeros(n_obj, np.int64)
    n = 0
    used = 0
    for i in range(obj.shape[0]):
        o = obj[i]
        p = score[i, 0]
        key = np.log(max(p, MIN_SCORE)) + score[i, 1]
        if pos[o] >= 0:
            out[i] = HIT
            _heap_rekey(hobj, hk1, hk2, pos, o, key, i, n)
            continue
        s = size[i]
        if s > capacity or (used + s > capacity and not p >= threshold):
            out[i] = MISS
            continue
        stored[o] = s
        _heap_push(hobj, hk1, hk2, pos, o, key, i, n)
        n += 1
        used += s
        out[i] = INSERT
        while used > capacity:
            v, _ = _heap_pop(hobj, hk1, hk2, pos, n)
            n -= 1
            used -= stored[v]
            if v == o:
                out[i] = MISS


# --------------------------------------------------------------------------------------------
# Belady: libCacheSim's pqueue (a 1-indexed binary max-heap on the next-access time) replayed
# operation by operation, so that even ties between never-again objects fall as they do there.
@njit(cache=True, nogil=True)
def _pq_bubble_up(d, hp, pos, i):
    moving, mp = d[i], hp[i]
    parent = i >> 1
    while i > 1 and hp[parent] < mp:
        d[i], hp[i] = d[parent], hp[parent]
        pos[d[i]] = i
        i = parent
        parent = i >> 1
    d[i], hp[i] = moving, mp
    pos[moving] = i


@njit(cache=True, nogil=True)
def _pq_percolate_down(d, hp, pos, i, qsize):
    moving, mp = d[i], hp[i]
    while True:
        c = i << 1                       # pqueue's maxchild()
        if c >= qsize:
            break
        if c + 1 < qsize and hp[c] < hp[c + 1]:
            c += 1
        if not mp < hp[c]:
            break
        d[i], hp[i] = d[c], hp[c]
        pos[d[i]] = i
        i = c
    d[i], hp[i] = moving, mp
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
    # d[1..qsize-1] holds object ids, hp the matching priorities; slot 0 is unused, as in pqueue
    d = np.zeros(n_obj + 1, np.int64)
    hp = np.zeros(n_obj + 1, np.int64)
    pos = np.zeros(n_obj, np.int64)
    present = np.zeros(n_obj, np.bool_)
    stored = np.zeros(n_obj, np.int64)
    qsize = 1
    used = 0
    for i in range(obj.shape[0]):
        o = obj[i]
        if present[o]:
            out[i] = HIT
            p = pos[o]                   # pqueue_change_priority()
            old = hp[p]
            hp[p] = nxt[i]
            if old < nxt[i]:
                _pq_bubble_up(d, hp, pos, p)
            else:
                _pq_percolate_down(d, hp, pos, p, qsize)
            continue
        s = size[i]
        if s > capacity or (bypass and nxt[i] == NEVER):
            out[i] = MISS
            continue
        fits = True
        while used + s > capacity:
            v = d[1]
            if bypass and hp[1] <= nxt[i]:
                fits = False
                break
            qsize -= 1                   # pqueue_pop()
            d[1], hp[1] = d[qsize], hp[qsize]
            _pq_percolate_down(d, hp, pos, 1, qsize)
            present[v] = False
            used -= stored[v]
        if not fits:
            out[i] = MISS
            continue
        present[o] = True
        stored[o] = s
        used += s
        d[qsize], hp[qsize] = o, nxt[i]  # pqueue_insert()
        qsize += 1
        _pq_bubble_up(d, hp, pos, qsize - 1)
        out[i] = INSERT


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel on a tiny trace."""
    obj = np.array([0, 1, 0], np.int64)
    size = np.array([1, 1, 1], np.int64)
    out = np.empty(3, np.int8)
    lru_kernel(obj, size, 1, 2, out)
    for mode in (LFU_MODE, GDSF_MODE, MODEL_MODE):
        priority_kernel(obj, size, 1, 2, out, mode, np.ones(3), 0.5, True)
    priority_kernel(obj, size, 1, 2, out, MODEL_MODE, np.ones((3, 2)), 0.5, True)
    belady_kernel(obj, size, next_access(obj), 1, 2, out, False)
