"""A change counter shared by every worker of one service: read-your-writes across workers.

gunicorn runs the service in several processes, each with its own model cache. An upload,
a delete or a new default acknowledged by one worker must be in force for the very next
request, whichever worker takes it. So each change bumps a 64-bit counter in a small file
under SMARTCACHE_HOME, mapped into every worker's memory; before answering, a worker compares
it with the value it last synchronised at (one aligned 8-byte read, no system call) and, if
it moved, drops what it has cached from the catalog before going on.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from pathlib import Path

from smartcache.catalog.config import make_private_dir

_FMT = "<Q"
_SIZE = struct.calcsize(_FMT)


class Generation:
    def __init__(self, path: Path):
        self.path = path
        make_private_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            if os.fstat(fd).st_size < _SIZE:
                # several workers may get here at once: extending only ever adds zeros
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        self._lock = threading.Lock()

    def current(self) -> int:
        return struct.unpack_from(_FMT, self._map, 0)[0]

    def bump(self) -> int:
        """Count one change (after it is committed to the catalog); returns the new value."""
        with self._lock, open(self.path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)     # other processes: one increment at a time
            try:
                value = self.current() + 1
                struct.pack_into(_FMT, self._map, 0, value)
                return value
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
