"""Write a trace in libCacheSim's ``oracleGeneral`` binary format (to cross-check and benchmark against it).

One packed little-endian record of 24 bytes per request::

    uint32 clock_time   seconds since the trace's first request
    uint64 obj_id       our dense object id + 1
    uint32 obj_size     size in ``unit`` bytes, rounded up (32 bits: bytes would overflow at 4 GiB)
    int64  next_access  index of the next request for the same object, -1 if none

libCacheSim reads -1 as "never again" and skips requests of size 0 (hence the rounding up).
Replaying the same trace with sizes rounded the same way (``kib_sizes``) gives identical decisions for
LRU and Belady, whose comparisons are exact integer ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.common.trace import Trace
from smartcache.tasks.simulate import kernels as K

ORACLE_DTYPE = np.dtype([("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access", "<i8")])


def unit_sizes(size: np.ndarray, unit: int = 1024) -> np.ndarray:
    return (np.asarray(size, np.int64) + unit - 1) // unit


def write_oracle_general(trace: Trace, path: str | Path, unit: int = 1024) -> Path:
    """Write ``trace`` as an oracleGeneral file with sizes in ``unit`` bytes."""
    path = Path(path)
    sizes = unit_sizes(trace.size, unit)
    if len(sizes) and sizes.max() >= 2**32:
        raise SmartcacheError(f"an object of {int(trace.size.max())} bytes does not fit 32 bits in units of {unit}")
    rec = np.zeros(len(trace), ORACLE_DTYPE)
    rel = trace.ts - (trace.ts[0] if len(trace) else 0.0)
    rec["clock_time"] = np.minimum(rel, 2**32 - 1).astype(np.uint32)
    rec["obj_id"] = trace.obj.astype(np.uint64) + 1
    rec["obj_size"] = sizes.astype(np.uint32)
    nxt = K.next_access(trace.obj)
    rec["next_access"] = np.where(nxt == K.NEVER, -1, nxt)
    rec.tofile(path)
    return path


def in_units(trace: Trace, unit: int = 1024) -> Trace:
    """The same trace with sizes in ``unit`` bytes, rounded up (what libCacheSim sees)."""
    return Trace(trace.ts, trace.obj, unit_sizes(trace.size, unit), trace.site, trace.sites, trace.lfns, trace.score)
