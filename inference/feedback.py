"""Feedback as data: every access the service sees, kept as daily Parquet partitions per site.

Each ``/decide`` query and each ``POST /access`` record is one request of the site's trace. A worker
buffers them and a background thread writes the buffer every :data:`FLUSH_SECONDS` (or at
:data:`FLUSH_ROWS` rows) as a new part file, written aside and renamed into place::

    <data_root>/feedback/site=<SITE>/day=<YYYY-MM-DD>/part-<pid>-<n>.parquet
        timestamp (float64 s), site, lfn, size (int64 bytes), source (decide|access), score, model

and registers the day's folder as the catalog dataset ``feedback/<SITE>/<day>`` (kind ``feedback``,
its rows and parts counted from the files): at its first part, then at most every :data:`REGISTER_SECONDS`
while parts are added (a catalog transaction and a footer read of every part of the day at each 2-second
flush cost, under load, about as much CPU as the requests' own feedback), and at a clean stop. A clean stop writes what is buffered; a crash loses at most
the last :data:`FLUSH_SECONDS`. The buffer is bounded (:data:`MAX_BUFFER` rows): when writing keeps
failing (a full disk), the oldest rows are dropped and counted, never the process's memory.
``smartcache export trace --feedback --site S`` turns the partitions back into a trace CSV.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from smartcache.tasks.feedback.partitions import KIND, SCHEMA, day_of, describe, partition_dir

log = logging.getLogger("smartcache.feedback")

FLUSH_SECONDS = 2.0
REGISTER_SECONDS = 30.0
FLUSH_ROWS = 20_000
MAX_BUFFER = 1_000_000


class FeedbackWriter:
    """Buffers accesses and writes them as partitions (see the module doc). Thread-safe."""

    def __init__(self, root: Path | str, register: Callable[[str, Path, dict], None] | None = None, *,
                 flush_seconds: float = FLUSH_SECONDS, flush_rows: int = FLUSH_ROWS, max_buffer: int = MAX_BUFFER):
        self.root = Path(root)
        self._register = register
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = 0
        self.flush_seconds, self.flush_rows, self.max_buffer = flush_seconds, flush_rows, max_buffer
        self.written = self.dropped = self.failed_flushes = 0
        self._registered: dict[tuple[str, str], float] = {}      # (site, day) -> when last registered
        self._unregistered: dict[tuple[str, str], Path] = {}     # days with parts the catalog does not count yet
        self._thread = threading.Thread(target=self._loop, name="smartcache-feedback", daemon=True)
        self._thread.start()

    def add(self, ts: Sequence[float], sites: Sequence[str], lfns: Sequence[str], sizes: Sequence[int],
            source: str, scores: Sequence[float | None] | None = None, model: str | None = None) -> None:
        scores = scores if scores is not None else [None] * len(lfns)
        rows = [(float(t), s, x, int(z), source, None if p is None else float(p), model)
                for t, s, x, z, p in zip(ts, sites, lfns, sizes, scores)]
        with self._lock:
            self._rows.extend(rows)
            self._bound()
            full = len(self._rows) >= self.flush_rows
        if full:
            self._wake.set()

    def add_row(self, row: tuple) -> None:
        """One access, as a row of :data:`SCHEMA` (``/decide``'s path: no lists built for one)."""
        with self._lock:
            self._rows.append(row)
            if len(self._rows) > self.max_buffer:
                self._bound()
            full = len(self._rows) >= self.flush_rows
        if full:
            self._wake.set()

    def _bound(self) -> None:
        # under self._lock: the oldest rows go first when writing keeps failing
        over = len(self._rows) - self.max_buffer
        if over > 0:
            del self._rows[:over]
            self.dropped += over

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Write what is buffered now; returns the rows written (0 if writing failed: they stay buffered)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            self._write(rows)
        except OSError as e:
            self.failed_flushes += 1
            log.error("feedback: cannot write %d accesses under %s: %s (kept in memory, retried)", len(rows),
                      self.root, e)
            with self._lock:
                self._rows[:0] = rows
                over = len(self._rows) - self.max_buffer
                if over > 0:
                    del self._rows[:over]
                    self.dropped += over
            return 0
        self.written += len(rows)
        self._register_days()
        return len(rows)

    def close(self) -> None:
        """Stop the thread and write everything buffered (a clean stop loses nothing)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
        self._register_days(final=True)

    # -- internals -------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.flush()

    def _write(self, rows: list[tuple]) -> None:
        # column by column: a dict per row (Table.from_pylist) costs more than the rest of the write
        cols = list(zip(*rows))
        table = pa.table([pa.array(c, type=f.type) for c, f in zip(cols, SCHEMA)], schema=SCHEMA)
        groups: dict[tuple[str, str], list[int]] = {}
        days: dict[int, str] = {}           # day_of depends on the UTC day only: once per day, not per row
        for i, (t, s) in enumerate(zip(cols[0], cols[1])):
            d = int(t // 86400.0)
            day = days.get(d)
            if day is None or t - 86400.0 * d > 86399.999:
                day = day_of(t)
                if t - 86400.0 * d <= 86399.999:     # near midnight, datetime's rounding decides: not kept
                    days[d] = day
            groups.setdefault((s, day), []).append(i)
        for (site, day), idx in groups.items():
            folder = partition_dir(self.root, site, day)
            folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"part-{os.getpid()}-{int(time.time() * 1000)}-{self._seq}.parquet"
            tmp = folder / f".{name}.tmp"
            part = table.take(pa.array(idx)).sort_by("timestamp")
            try:
                pq.write_table(part, tmp, compression="zstd")
                os.replace(tmp, folder / name)
            finally:
                tmp.unlink(missing_ok=True)
            self._unregistered[(site, day)] = folder

    def _register_days(self, final: bool = False) -> None:
        """Catalog rows of the days written to: new days now, the others when due (all of them if final)."""
        if self._register is None:
            return
        now = time.monotonic()
        for (site, day), folder in list(self._unregistered.items()):
            last = self._registered.get((site, day))
            if not final and last is not None and now - last < REGISTER_SECONDS:
                continue
            try:
                self._register(f"{KIND}/{site}/{day}", folder, describe(folder))
            except Exception as e:  # noqa: BLE001 - the catalog row is redone when next due
                log.warning("feedback: cannot register %s/%s in the catalog: %s", site, day, e)
                continue
            del self._unregistered[(site, day)]
            self._registered[(site, day)] = now

