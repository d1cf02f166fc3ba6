"""How a trained model plugs into the cache simulator.

A :data:`Scorer` is any callable that takes a batch of requests -- a ``pyarrow.Table`` (or, for next-read
models, the :class:`~smartcache.tasks.common.trace.Trace` itself) with the trace
columns ``timestamp`` (float64 epoch s), ``site``, ``lfn`` (strings) and ``size`` (int64 bytes), in time
order -- and returns one float per row: the model's probability that the file is read again soon at that
site, given what was known at that request. The simulator calls it once per site with the site's whole
replay (so the scorer can build past-only rolling features over it); it must not look ahead. A scorer may
carry an ``admit_threshold`` or a ``threshold`` attribute (its operating point): the admission threshold
unless overridden (:func:`threshold_of`).

How the scores drive the cache. A next-read model (a scorer whose ``kind`` is ``"next-gap"``, what
``smartcache train`` makes) gives per request the distribution of the time to the file's next read
(:class:`NextGapScores`); the learned kernel (:mod:`.learned`) evicts the file least likely to be read
again before it would leave the cache anyway and admits a newcomer only when it is likelier than that.
Older models (one probability per request) drive ``kernels.priority_kernel`` in model mode:

- a scorer with a ``decay_days`` attribute (what ``tasks/train`` records for request-level models): a
  cached file's value is its latest score p discounted by the time since that read,
  ``p * exp(-age / decay_days)``: the priority ``ln p + t / decay_days`` is fixed at the read, so the
  heap never needs re-keying. A miss goes into free space; when something must go, the newcomer is
  inserted and the lowest-valued file leaves -- the newcomer itself when it is worth least, i.e. it
  is admitted only if it is worth more than the file it would push out (no fixed threshold: scores
  below the scorer's ``admit_threshold``, 0 for those models, are never admitted over others).
  :func:`score_requests` then returns ``[n, 2]``: the score and ``t / decay_days``.
- otherwise (a plain ``score`` column, or scorers without a decay): priority = the latest score plus
  GDSF's aging L, and a miss that needs an eviction is admitted only when its score >= threshold.

``model:NAME`` loads a scorer from the catalog with ``smartcache.tasks.score.scorer.load_scorer(store, name)``,
which the training part provides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from smartcache.catalog.errors import SmartcacheError

Scorer = Callable[[pa.Table], np.ndarray]


@dataclass(frozen=True)
class NextGapScores:
    """A next-read model's answer for a replay: per request, the probabilities of the next-gap classes.

    Class j < len(edges) is "the next read within ``edges[j]`` seconds (and after the previous edge)", the
    last class "later or never". The model kernel (:mod:`.learned`) evicts and admits by it."""

    probs: np.ndarray    # float32 [n, len(edges) + 1], rows sum to 1
    edges: np.ndarray    # float64 seconds

    def __len__(self) -> int:
        return int(self.probs.shape[0])


class ScoringUnavailable(SmartcacheError):
    """No model scorer can be loaded (the scoring part is missing or failed to import)."""


def model_name(policy: str) -> str | None:
    """``"model:NAME"`` -> ``"NAME"``; ``"model"`` (scores from the trace) -> None."""
    base, _, name = policy.partition(":")
    return name or None if base == "model" else None


def load_scorer(store, name: str) -> Scorer:
    """The scorer of catalog model ``name`` (``NAME`` or ``NAME:VERSION``), via the scoring part."""
    try:
        from smartcache.tasks.score import scorer as scoring
    except ImportError as e:
        raise ScoringUnavailable(f"model scoring not available: {e}") from e
    loader = getattr(scoring, "load_scorer", None)
    if loader is None:
        raise ScoringUnavailable("model scoring not available: smartcache.tasks.score.scorer has no load_scorer")
    return loader(store, name)


DAY = 86400.0


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def threshold_of(scorer: Scorer | None, default: float = 0.5) -> float:
    """The simulator's admission threshold: the scorer's ``admit_threshold``, else its ``threshold``."""
    for attr in ("admit_threshold", "threshold"):
        value = _number(getattr(scorer, attr, None))
        if value is not None:
            return value
    return default


def decay_of(scorer: Scorer | None) -> float | None:
    """The scorer's ``decay_days`` (a positive number of days), or None."""
    value = _number(getattr(scorer, "decay_days", None))
    return value if value is not None and value > 0 else None


def score_requests(scorer: Scorer, requests) -> np.ndarray | NextGapScores:
    """Call ``scorer`` and check its answer: one finite float per request.

    For a scorer with a decay (see the module doc), ``[n, 2]``: the scores and each request's time in
    units of the decay (from the first request), which the model kernel turns into priorities.
    """
    if getattr(scorer, "kind", None) == "next-gap":
        # a next-read scorer takes the Trace itself (no round trip through a table of strings)
        probs = np.asarray(scorer(requests), dtype=np.float32)
        edges = np.asarray(getattr(scorer, "gap_edges"), np.float64)
        n = len(requests) if not hasattr(requests, "num_rows") else requests.num_rows
        if probs.shape != (n, len(edges) + 1) or not np.isfinite(probs).all():
            raise SmartcacheError(f"the next-gap scorer returned {probs.shape} values for {n} requests and "
                                  f"{len(edges) + 1} classes")
        return NextGapScores(np.ascontiguousarray(probs), edges)
    if not hasattr(requests, "num_rows"):
        requests = requests.table()
    scores = np.asarray(scorer(requests), dtype=np.float64).reshape(-1)
    if scores.shape[0] != requests.num_rows:
        raise SmartcacheError(f"the scorer returned {scores.shape[0]} scores for {requests.num_rows} requests")
    if not np.isfinite(scores).all():
        raise SmartcacheError("the scorer returned scores that are not finite numbers")
    decay = decay_of(scorer)
    if decay is None:
        return scores
    ts = np.asarray(requests.column("timestamp").cast(pa.float64()).to_numpy(), np.float64)
    clock = (ts - (ts.min() if len(ts) else 0.0)) / (decay * DAY)
    return np.ascontiguousarray(np.column_stack([scores, clock]))
