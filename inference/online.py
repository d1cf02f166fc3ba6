"""The online loop in the service: every query is an access, every access updates state and is kept.

:class:`Online` holds, per service process, the shared access state (:mod:`.state`, one for all workers)
and the feedback writer (:mod:`.feedback`). ``/decide`` and ``POST /access`` call :meth:`Online.observe`
once per request with the site, the file, its size and the time; a next-read model then scores the
request from the features that call returned -- the features the simulator's model policy computes for
the same request of the same trace (:func:`smartcache.tasks.features.online.step` is shared), so the
service's score is the simulator's.

The answer of a next-read model (a model whose ``params["policy"]`` is ``"next-gap"``, what ``smartcache
train`` makes): ``score`` = P(the file is read again at the site within ``decide_horizon_s`` seconds),
the model's CDF at that horizon (:func:`decide_score`); ``store = score >= threshold``. The horizon
and threshold are model params (defaults :data:`DEFAULT_HORIZON_S`, :data:`DEFAULT_THRESHOLD`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from smartcache.catalog import Config, Store
from smartcache.inference.feedback import FeedbackWriter
from smartcache.inference.state import AccessState, Capacity
from smartcache.tasks.common.nextgap import cdf_at, cumulative

log = logging.getLogger("smartcache.inference")

DEFAULT_HORIZON_S = 86400.0
DEFAULT_THRESHOLD = 0.5
DEFAULT_SIZE = 2.5e9              # a typical CMS file, for an open that does not say its size
SNAPSHOT_SECONDS = 60.0


def decide_score(probs: np.ndarray, edges: np.ndarray, horizon_s: float = DEFAULT_HORIZON_S) -> np.ndarray:
    """P(read again within ``horizon_s``) of each row of next-gap class probabilities (float64 ``[n]``)."""
    probs = np.atleast_2d(np.asarray(probs, np.float64))
    return cdf_at(cumulative(probs), np.full(len(probs), float(horizon_s)), np.asarray(edges, np.float64))


def state_folder(config: Config) -> Path:
    """Where the live tables are mapped from: the page cache keeps them at memory speed; the kernel writes
    them back in the background, and the snapshot beside them is the consistent copy a restart restores."""
    return config.home / "state" / "live"


class Online:
    """Access state + feedback of one service process (the state itself is shared by all workers)."""

    def __init__(self, config: Config, store: Store | None, *, folder: Path | None = None,
                 capacity: Capacity = Capacity(), feedback_root: Path | None = None):
        self.snapshot_path = config.home / "state" / "access-state.npz"
        self.state = AccessState.open(folder or state_folder(config), capacity, snapshot=self.snapshot_path)
        register = _registrar(store) if store is not None else None
        self.feedback = FeedbackWriter(feedback_root or Path(config.data_root) / "feedback", register)
        self._last_snapshot = time.monotonic()
        self._snap_lock = threading.Lock()

    def observe(self, sites: Sequence[str], lfns: Sequence[str], sizes: Sequence[float | None],
                ts: Sequence[float]) -> np.ndarray:
        """Features of these accesses (state before each), the state updated; see :class:`AccessState`."""
        sz = [DEFAULT_SIZE if s is None else float(s) for s in sizes]
        return self.state.observe(sites, lfns, sz, ts)

    def observe_one(self, site: str, lfn: str, size: float | None, ts: float) -> np.ndarray:
        """:meth:`observe` of one access (``/decide``: no lists to build): its features ``[N_FEATURES]``."""
        return self.state.observe_one(site, lfn, DEFAULT_SIZE if size is None else float(size), ts)

    def record(self, ts: Sequence[float], sites: Sequence[str], lfns: Sequence[str],
               sizes: Sequence[float | None], source: str, scores: Sequence[float | None] | None = None,
               model: str | None = None) -> None:
        self.feedback.add(ts, sites, lfns, [0 if s is None else int(s) for s in sizes], source, scores, model)

    def record_one(self, ts: float, site: str, lfn: str, size: float | None, source: str,
                   score: float | None = None, model: str | None = None) -> None:
        """:meth:`record` of one access, the row as :meth:`record` makes it."""
        self.feedback.add_row((float(ts), site, lfn, 0 if size is None else int(size), source,
                               None if score is None else float(score), model))

    def maybe_snapshot(self) -> None:
        """Every :data:`SNAPSHOT_SECONDS`, one worker (whichever gets the lock file first) snapshots."""
        if time.monotonic() - self._last_snapshot < SNAPSHOT_SECONDS or not self._snap_lock.acquire(False):
            return
        try:
            self._last_snapshot = time.monotonic()
            self.snapshot()
        except OSError as e:
            log.warning("access state snapshot failed: %s", e)
        finally:
            self._snap_lock.release()

    def snapshot(self) -> Path:
        return self.state.snapshot(self.snapshot_path)

    def close(self) -> None:
        """A clean stop: write every buffered access and a snapshot of the state."""
        self.feedback.close()
        try:
            self.snapshot()
        except OSError as e:
            log.warning("access state snapshot at stop failed: %s", e)
        self.state.close()

    def stats(self) -> dict:
        return {**self.state.stats(), "feedback_written": self.feedback.written,
                "feedback_pending": self.feedback.pending(), "feedback_dropped": self.feedback.dropped,
                "snapshot": str(self.snapshot_path)}


def _registrar(store: Store):
    from smartcache.tasks.feedback.partitions import KIND

    def register(name: str, folder: Path, meta: dict) -> None:
        store.register_dataset(name, KIND, folder.resolve().as_uri(), format="parquet", n_rows=meta["rows"],
                               n_bytes=meta["bytes"], meta=meta)
    return register
