"""Continued training, simulated: a next-read model retrained on the past only, every ``every`` seconds.

``smartcache simulate --policy model:NAME --retrain-every 7d [--retrain-window 28d]`` replays a trace twice for
the model: frozen (NAME as trained) and retrained: from the first counted day on, at each step ``t_k`` a model
is fitted on the requests before ``t_k`` (the last ``window`` of them in time, when given) (labels censored at ``t_k``, the same trainer as ``smartcache train``) and
scores the requests of ``[t_k, t_k + every)``. Features are the online ones, computed once over the whole
replay (they do not depend on the model). Nothing is registered: this measures what continued training
would have given on that trace, e.g. on one whose popularity drifts.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from smartcache.catalog.errors import Invalid
from smartcache.tasks.common.trace import Trace
from smartcache.tasks.features.online import trace_features
from smartcache.tasks.simulate import hindsight as H
from smartcache.tasks.train import nextgap as NG

log = logging.getLogger("smartcache.train")
MIN_ROWS = 1000


def parse_every(text: str) -> float:
    """``7d``, ``12h``, ``90m`` or seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise Invalid(f"--retrain-every must be a duration like 7d, 12h or 90m, not {text!r}")
    return float(m.group(1)) * {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}[m.group(2)]


class RetrainingScorer:
    """Scores a trace with ``base`` before ``start`` and with models refitted every ``every`` seconds after."""

    kind = "next-gap"

    def __init__(self, base, every: float, start: float, cfg: NG.NextGapConfig | None = None,
                 max_rows: int = 1_000_000, window: float | None = None):
        if getattr(base, "kind", None) != "next-gap":
            raise Invalid(f"--retrain-every needs a next-read model (one made by `smartcache train`), "
                          f"not {getattr(base, 'ref', base)}")
        self.base, self.every, self.start, self.max_rows = base, float(every), float(start), max_rows
        self.window = window     # train on the last ``window`` seconds only (None: the whole past)
        self.gap_edges = base.gap_edges
        fit = dict(base.params.get("fit") or {})
        known = {k: v for k, v in fit.items() if k in NG.NextGapConfig.__dataclass_fields__}
        if "hidden" in known:
            known["hidden"] = tuple(known["hidden"])
        self.cfg = cfg or NG.NextGapConfig(**known)
        self.ref = f"{base.ref}+retrain"
        self.steps: list[dict] = []

    def __call__(self, trace: Trace) -> np.ndarray:
        x = trace_features(trace)
        probs = self.base.predict_all(x)
        gap = H.next_gap(trace)
        t = self.start
        while t <= trace.ts[-1]:
            past = (trace.ts < t) & (trace.ts >= (t - self.window if self.window else -np.inf))
            span = (trace.ts >= t) & (trace.ts < t + self.every)
            if span.any() and past.sum() >= MIN_ROWS:
                rows = np.flatnonzero(past)[-self.max_rows:]
                mask = H.gap_buckets(gap[rows], t - trace.ts[rows])
                fitted = NG.fit(x[rows], mask, self.cfg)
                probs[span] = NG.predict(fitted.model, x[span])
                self.steps.append({"at": t, "rows": int(len(rows)), "scored": int(span.sum()),
                                   "seconds": round(fitted.seconds, 1)})
                log.info("retrained at %s on %d requests (%.0f s)", t, len(rows), fitted.seconds)
            t += self.every
        return probs
