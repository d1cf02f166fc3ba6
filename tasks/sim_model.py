"""How a trained model plugs into the cache simulator.

A :data:`Scorer` is any callable that takes a batch of requests -- a ``pyarrow.Table`` with the trace
columns ``timestamp`` (float64 epoch s), ``site``, ``lfn`` (strings) and ``size`` (int64 bytes), in time
order -- and returns one float per row: the model's probability that the file is read again soon at that
site, given what was known at that request. The simulator calls it once per site with the site's whole
replay (so the scorer can build past-only rolling features over it); it must not look ahead. A scorer may
carry a ``threshold`` attribute: its operating point, used as the admission threshold unless overridden.

The model policy admits a miss when its score >= threshold and evicts the cached file with the lowest
expected value (its latest score, aged as in GDSF): see ``sim_policies.priority_kernel``.

``model:NAME`` loads a scorer from the catalog with ``smartcache.tasks.scoring.load_scorer(store, name)``,
which the training part provides.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa

from smartcache.catalog.errors import SmartcacheError

Scorer = Callable[[pa.Table], np.ndarray]


class ScoringUnavailable(SmartcacheError):
    """No model scorer can be loaded (the scoring part is missing or failed to import)."""


def model_name(policy: str) -> str | None:
    """``"model:NAME"`` -> ``"NAME"``; ``"model"`` (scores from the trace) -> None."""
    base, _, name = policy.partition(":")
    return name or None if base == "model" else None


def load_scorer(store, name: str) -> Scorer:
    """The scorer of catalog model ``name`` (``NAME`` or ``NAME:VERSION``), via the scoring part."""
    try:
        from smartcache.tasks import scoring
    except ImportError as e:
        raise ScoringUnavailable(f"model scoring not available: {e}") from e
    loader = getattr(scoring, "load_scorer", None)
    if loader is None:
        raise ScoringUnavailable("model scoring not available: smartcache.tasks.scoring has no load_scorer")
    return loader(store, name)


def threshold_of(scorer: Scorer | None, default: float = 0.5) -> float:
    value = getattr(scorer, "threshold", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def score_requests(scorer: Scorer, requests: pa.Table) -> np.ndarray:
    """Call ``scorer`` and check its answer: one finite float per request."""
    scores = np.asarray(scorer(requests), dtype=np.float64).reshape(-1)
    if scores.shape[0] != requests.num_rows:
        raise SmartcacheError(f"the scorer returned {scores.shape[0]} scores for {requests.num_rows} requests")
    if not np.isfinite(scores).all():
        raise SmartcacheError("the scorer returned scores that are not finite numbers")
    return scores
