"""Per-site access state shared by every worker of the service: what ``/decide`` knows at a file open.

Each query and each reported access is a request of the trace the simulator replays: it updates the
state of its file, its dataset and its site at that site, and the model scores it with the features
read off that state *before* the update -- :func:`smartcache.tasks.features.online.step`, the very
function the simulator and the trainer run, so a replay through the service gives the simulator's scores.

Design: the state lives in fixed-size numpy arrays memory-mapped from files in one folder, so every
gunicorn worker maps the same bytes; an ``flock`` on a lock file serialises the updates (one compiled call
per batch) between processes, a thread lock between the threads of one (an flock belongs to the open file,
which a process's threads share). The lock is taken and dropped without releasing the GIL (a try-lock through
:class:`ctypes.PyDLL`; the blocking ``fcntl.flock`` only when another process holds it) and a single access is
updated by a compiled call that keeps the GIL: otherwise every release hands the GIL to another thread of the
worker and the holder of the shared lock waits for it back while the other process waits for the lock.
Measured: an access costs 24-31 us with the lock (6 us of it) as first written; a state-owner process would
add a Unix-socket round trip per access (27 us, Python at both ends, an empty echo) and funnel every worker
through one process; sharding by site does not fit gunicorn, which hands any request to any worker. Files, datasets and sites are
open-addressing hash tables keyed by a 64-bit hash of ``site + name`` (no strings are kept: a tracked
file costs :func:`bytes_per_file` bytes). Memory is bounded by the capacities; entries unseen for longer
than the longest feature window (:data:`~smartcache.tasks.features.online.LONGEST_WINDOW_S`) carry no
information and are dropped when the tables fill up (:meth:`AccessState.forget`). :meth:`snapshot`
writes the tables atomically; a service that starts without live tables restores the last snapshot.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import threading
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.common.cms import dataset_tier_of
from smartcache.tasks.features import online as O

try:
    from numba import njit
except ImportError:  # pragma: no cover
    def njit(*args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda f: f)

VERSION = 1
MAX_LOAD = 0.75                 # forget stale entries beyond this fill; refuse new ones beyond 0.9
FULL_LOAD = 0.9
SMALL_BATCH = 64                # up to this many accesses, the compiled update keeps the GIL (see the module doc)
# meta: [version, files_cap, ds_cap, sites_cap, n_files, n_ds, n_sites, untracked, accesses, last_forget]
_META = 10


_LIBC = ctypes.PyDLL(None, use_errno=True)   # PyDLL: a call keeps the GIL (a non-blocking flock needs no release)
_flock_keep_gil = _LIBC.flock
_flock_keep_gil.argtypes, _flock_keep_gil.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int


class StateError(SmartcacheError):
    """The shared access state cannot be created, opened or restored."""


def key_of(site: str, name: str) -> int:
    """A 64-bit key of a name at a site; 0 is reserved for an empty slot."""
    k = int.from_bytes(hashlib.blake2b(f"{site}\0{name}".encode(), digest_size=8).digest(), "little")
    return k or 1


@dataclass(frozen=True)
class Capacity:
    files: int = 1 << 20
    datasets: int = 1 << 16
    sites: int = 1 << 10

    def rounded(self) -> "Capacity":
        return Capacity(*(1 << max(4, (n - 1).bit_length()) for n in (self.files, self.datasets, self.sites)))


def _arrays(cap: Capacity) -> dict[str, tuple[tuple[int, ...], str]]:
    f, d, s = cap.files, cap.datasets, cap.sites
    return {"meta": ((_META,), "<i8"), "f_key": ((f,), "<u8"), "f64": ((f, O._F64), "<f8"),
            "f32": ((f, O._F32), "<f4"), "d_key": ((d,), "<u8"), "d64": ((d, O._D64), "<f8"),
            "d32": ((d, O._D32), "<f4"), "s_key": ((s,), "<u8"), "s64": ((s, 1), "<f8"), "s32": ((s, 3), "<f4")}


def bytes_per_file(cap: Capacity = Capacity()) -> float:
    """Bytes the file table costs per tracked file at the fill where stale entries start being dropped."""
    per_slot = 8 + 8 * O._F64 + 4 * O._F32
    return per_slot / MAX_LOAD


class AccessState:
    """The shared tables of one service (see the module doc). Thread- and process-safe through the lock."""

    def __init__(self, folder: Path, arrays: dict[str, np.ndarray]):
        self.folder = folder
        self._maps = arrays
        # plain ndarray views of the maps: numba types them faster than np.memmap on every call
        self.a = {k: v.view(np.ndarray) for k, v in arrays.items()}
        self._fhl, self._dhl = np.array(O.FILE_HALF_LIVES), np.array(O.DS_HALF_LIVES)
        a = self.a
        # the compiled update's table arguments, in its order, resolved once (not per request)
        self._tables = (a["meta"], a["f_key"], a["f64"], a["f32"], a["d_key"], a["d64"], a["d32"], a["s_key"],
                        a["s64"], a["s32"], self._fhl, self._dhl)
        self._meta = memoryview(a["meta"])      # its items are Python ints: 20x cheaper to read than numpy's
        self._f_max, self._d_max = MAX_LOAD * len(a["f_key"]), MAX_LOAD * len(a["d_key"])
        self._lock_fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._tlock = threading.Lock()
        self._site_keys: dict[str, int] = {}

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: Path | str, capacity: Capacity = Capacity(), snapshot: Path | None = None) -> "AccessState":
        """Map the live tables in ``folder``, creating them (from ``snapshot`` when it exists) if absent."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _flocked(folder / "create.lock"):
            if not (folder / "meta.npy").exists():
                _create(folder, capacity.rounded(), snapshot)
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r+") for name in _arrays(Capacity())}
        if int(arrays["meta"][0]) != VERSION:
            raise StateError(f"{folder}: access state of version {int(arrays['meta'][0])}, this service needs "
                             f"{VERSION} (remove the folder to start afresh)")
        return cls(folder, arrays)

    def close(self) -> None:
        os.close(self._lock_fd)
        for arr in self._maps.values():
            if isinstance(arr, np.memmap):
                arr.flush()

    @contextmanager
    def locked(self) -> Iterator[None]:
        self._acquire()
        try:
            yield
        finally:
            self._release()

    def _acquire(self) -> None:
        self._tlock.acquire()            # uncontended: no GIL release
        if _flock_keep_gil(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB) == 0:
            return
        try:                             # another process holds it: wait, GIL released
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except BaseException:
            self._tlock.release()
            raise

    def _release(self) -> None:
        _flock_keep_gil(self._lock_fd, fcntl.LOCK_UN)
        self._tlock.release()

    # -- the request path ------------------------------------------------------------------------
    def observe(self, sites: Sequence[str], lfns: Sequence[str], sizes: Sequence[float], ts: Sequence[float]
                ) -> np.ndarray:
        """Features ``[n, N_FEATURES]`` of these requests (in this order), each from the state before it;
        the state is updated with them. One lock, one compiled call."""
        n = len(lfns)
        keys = np.empty((n, 3), np.uint64)
        num = np.empty((n, 3))           # time, log10 size, tier code
        for i, (s, x) in enumerate(zip(sites, lfns)):
            ds, tier = dataset_tier_of(x)
            keys[i] = key_of(s, x), key_of(s, ds), self._site_key(s)
            num[i] = ts[i], math.log10(max(float(sizes[i]), 1.0)), tier
        out = np.empty((n, O.N_FEATURES), np.float32)
        self._update(keys, num, out, float(np.max(num[:, 0])) if n else time.time())
        return out

    def observe_one(self, site: str, lfn: str, size: float, ts: float) -> np.ndarray:
        """:meth:`observe` of one access (the /decide path, a few us cheaper): its features ``[N_FEATURES]``."""
        ds, tier = dataset_tier_of(lfn)
        keys = np.empty((1, 3), np.uint64)      # item by item: half the cost of np.array of a nested tuple
        keys[0, 0], keys[0, 1], keys[0, 2] = key_of(site, lfn), key_of(site, ds), self._site_key(site)
        num = np.array(((ts, math.log10(max(float(size), 1.0)), tier),))
        out = np.empty((1, O.N_FEATURES), np.float32)
        self._update(keys, num, out, float(ts))
        return out[0]

    def _site_key(self, site: str) -> int:
        # a handful of sites: their keys are remembered (bounded, in case of junk names)
        k = self._site_keys.get(site)
        if k is None:
            k = key_of(site, "")
            if len(self._site_keys) < 4096:
                self._site_keys[site] = k
        return k

    def _update(self, keys: np.ndarray, num: np.ndarray, out: np.ndarray, now: float) -> None:
        kernel = _observe_gil if len(keys) <= SMALL_BATCH else _observe
        self._acquire()
        try:
            if self._meta[4] > self._f_max or self._meta[5] > self._d_max:
                self._forget(now)
            kernel(keys, num, *self._tables, out)
        finally:
            self._release()

    # -- upkeep ------------------------------------------------------------------------------------
    def forget(self, now: float | None = None) -> int:
        """Drop files and datasets unseen for longer than the longest feature window; returns how many."""
        with self.locked():
            return self._forget(time.time() if now is None else now)

    def _forget(self, now: float) -> int:
        a = self.a
        cutoff = now - O.LONGEST_WINDOW_S
        before = int(a["meta"][4] + a["meta"][5])
        a["meta"][4] = _rebuild(a["f_key"], a["f64"], a["f32"], cutoff)
        a["meta"][5] = _rebuild(a["d_key"], a["d64"], a["d32"], cutoff)
        a["meta"][9] = int(now)
        return before - int(a["meta"][4] + a["meta"][5])

    def stats(self) -> dict:
        m = self.a["meta"]
        files, ds = int(m[4]), int(m[5])
        table_bytes = sum(v.nbytes for k, v in self.a.items() if k in ("f_key", "f64", "f32"))
        return {"tracked_files": files, "tracked_datasets": ds, "sites": int(m[6]), "accesses": int(m[8]),
                "untracked": int(m[7]), "file_capacity": len(self.a["f_key"]),
                "bytes_per_file_slot": table_bytes / len(self.a["f_key"]),
                "bytes_per_tracked_file": round(table_bytes / files, 1) if files else None,
                "folder": str(self.folder)}

    def snapshot(self, path: Path | str) -> Path:
        """Write the tables to ``path`` (``.npz``) atomically: a copy under the lock, the write outside it."""
        path = Path(path)
        with self.locked():
            copies = {k: np.array(v) for k, v in self.a.items()}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **copies)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _create(folder: Path, cap: Capacity, snapshot: Path | None) -> None:
    """Write fresh (or restored) tables, each file complete before the metadata that marks them ready."""
    saved = None
    if snapshot is not None and Path(snapshot).exists():
        try:
            saved = np.load(snapshot)
            if int(saved["meta"][0]) != VERSION:
                saved = None
            else:
                cap = Capacity(int(saved["meta"][1]), int(saved["meta"][2]), int(saved["meta"][3]))
        except (OSError, ValueError, KeyError) as e:
            raise StateError(f"cannot restore the access state from {snapshot}: {e}") from e
    for name, (shape, dtype) in _arrays(cap).items():
        if name == "meta":
            continue
        arr = np.lib.format.open_memmap(folder / f".{name}.npy", mode="w+", dtype=dtype, shape=shape)
        if saved is not None:
            arr[...] = saved[name]
        arr.flush()
        del arr
        os.replace(folder / f".{name}.npy", folder / f"{name}.npy")
    meta = np.zeros(_META, np.int64)
    if saved is not None:
        meta[:] = saved["meta"]
    meta[:4] = (VERSION, cap.files, cap.datasets, cap.sites)
    np.save(folder / ".meta.npy", meta)
    os.replace(folder / ".meta.npy", folder / "meta.npy")


# -- compiled hash tables ----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _slot(keys, key, count, meta):
    """The slot of ``key`` (inserted if absent, state zero); -1 when the table is too full to add it."""
    mask = keys.shape[0] - 1
    i = np.int64(key & np.uint64(mask))
    while True:
        k = keys[i]
        if k == key:
            return i
        if k == 0:
            if meta[count] >= FULL_LOAD * keys.shape[0]:
                return -1
            keys[i] = key
            meta[count] += 1
            return i
        i = (i + 1) & mask


@njit(cache=True)
def _observe_body(keys, num, meta, f_key, f64, f32, d_key, d64, d32, s_key, s64, s32, fhl, dhl, out):
    """Accesses ``keys[i]`` = (file, dataset, site) keys, ``num[i]`` = (time, log10 size, tier code), in order."""
    for i in range(keys.shape[0]):
        f = _slot(f_key, keys[i, 0], 4, meta)
        d = _slot(d_key, keys[i, 1], 5, meta)
        s = _slot(s_key, keys[i, 2], 6, meta)
        meta[8] += 1
        if f < 0 or d < 0 or s < 0:
            # a file or dataset that cannot be tracked (tables full) is scored as never seen, on scratch rows
            meta[7] += 1
            sf64 = np.zeros((1, f64.shape[1]))
            sf32 = np.zeros((1, f32.shape[1]), np.float32)
            sd64 = np.zeros((1, d64.shape[1]))
            sd32 = np.zeros((1, d32.shape[1]), np.float32)
            if s < 0:
                s = 0
            O.step(num[i, 0], 0, 0, s, num[i, 1], num[i, 2], sf64 if f < 0 else f64[f:f + 1],
                   sf32 if f < 0 else f32[f:f + 1], sd64 if d < 0 else d64[d:d + 1],
                   sd32 if d < 0 else d32[d:d + 1], s64, s32, fhl, dhl, out[i])
            continue
        O.step(num[i, 0], f, d, s, num[i, 1], num[i, 2], f64, f32, d64, d32, s64, s32, fhl, dhl, out[i])


# Large batches release the GIL while they run; small ones keep it (see the module doc). Two functions, not
# one compiled twice: numba's disk cache does not tell a nogil compilation from the other.
@njit(cache=True, nogil=True)
def _observe(keys, num, meta, f_key, f64, f32, d_key, d64, d32, s_key, s64, s32, fhl, dhl, out):
    _observe_body(keys, num, meta, f_key, f64, f32, d_key, d64, d32, s_key, s64, s32, fhl, dhl, out)


@njit(cache=True)
def _observe_gil(keys, num, meta, f_key, f64, f32, d_key, d64, d32, s_key, s64, s32, fhl, dhl, out):
    _observe_body(keys, num, meta, f_key, f64, f32, d_key, d64, d32, s_key, s64, s32, fhl, dhl, out)


@njit(cache=True, nogil=True)
def _rebuild(keys, s64, s32, cutoff):
    """Keep the entries seen at or after ``cutoff`` (column 0 of ``s64`` is the last time), rehashed."""
    n = keys.shape[0]
    mask = n - 1
    live = 0
    for i in range(n):
        if keys[i] != 0 and s64[i, 0] >= cutoff:
            live += 1
    k_keep = np.empty(live, np.uint64)
    a_keep = np.empty((live, s64.shape[1]))
    b_keep = np.empty((live, s32.shape[1]), np.float32)
    j = 0
    for i in range(n):
        if keys[i] != 0 and s64[i, 0] >= cutoff:
            k_keep[j] = keys[i]
            a_keep[j] = s64[i]
            b_keep[j] = s32[i]
            j += 1
    keys[:] = 0
    s64[:] = 0.0
    s32[:] = 0.0
    for j in range(live):
        i = np.int64(k_keep[j] & np.uint64(mask))
        while keys[i] != 0:
            i = (i + 1) & mask
        keys[i] = k_keep[j]
        s64[i] = a_keep[j]
        s32[i] = b_keep[j]
    return live
