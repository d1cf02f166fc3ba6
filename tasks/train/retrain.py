"""Continued training, simulated: the retrain workflow replayed on a trace, every ``every`` seconds.

``smartcache simulate --policy model:NAME --retrain-every 7d [--retrain-window 28d]`` replays a trace twice
for the model: frozen (NAME as trained) and retrained. From the first counted day on, at each step ``t_k``
the step does what ``smartcache submit retrain`` does with the feedback of the last ``window`` before
``t_k`` (:mod:`smartcache.submit.retrain`):

1. the last days of that window are held out (:func:`~smartcache.tasks.feedback.window.held_out_day`, the
   DAG's rule: the last 20 % of its days, at least one);
2. a candidate is fitted on the requests before them, labels censored there (``train --until HELD``), from
   scratch and warm-started from the *current* model's weights; the lower validation loss wins
   (:func:`~smartcache.tasks.train.continued.fit_best`, the train node's own code);
3. the candidate replaces the current model only if it is better on the held-out days (the gate), and the
   current model scores the requests of ``[t_k, t_k + every)``.

The gate, by default, is the evaluate node's: the byte hit ratio of the held-out days through the learned
kernel at the simulated cache sizes (the window replayed warm from its first request, counted from the
held-out day; byte-weighted over the sizes; strictly better wins) -- the figure the simulation reports, so
the gate cannot prefer a model that scores better on a proxy and caches worse. ``gate="nll"`` compares the
censored log-likelihood of the held-out requests instead (labels censored at ``t_k``: only the past is
known), for when no cache sizes are given; ``gate="none"`` with ``init="fresh"`` is the earlier behaviour
(refit from scratch on the whole window, always replace). Features are the online ones, computed once over
the replay (they do not depend on the model). Each step is recorded in :attr:`RetrainingScorer.steps`.
Nothing is registered: this measures what continued training would have given on that trace.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np

from smartcache.catalog.errors import Invalid
from smartcache.tasks.common.trace import DAY, Trace
from smartcache.tasks.feedback.window import DEFAULT_HOLDOUT, held_out_day
from smartcache.tasks.features.online import ONLINE_FEATURES, trace_features
from smartcache.tasks.simulate import hindsight as H
from smartcache.tasks.train import continued as C
from smartcache.tasks.train import nextgap as NG
from smartcache.tasks.train import weights as WT
from smartcache.tasks.train.trace import FEATURE_SET

log = logging.getLogger("smartcache.train")
MIN_ROWS = 1000
INITS = ("best", "warm", "fresh")     # best: fresh and warm-started, the lower validation loss (the DAG's)
GATES = ("bhr", "nll", "none")


def parse_every(text: str) -> float:
    """``7d``, ``12h``, ``90m`` or seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise Invalid(f"--retrain-every must be a duration like 7d, 12h or 90m, not {text!r}")
    return float(m.group(1)) * {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}[m.group(2)]


@dataclass(frozen=True)
class RetrainPlan:
    """How the simulated retraining runs (see the module doc)."""
    every: float                        # seconds between steps
    start: float                        # the first step (epoch s): the first counted request
    window: float | None = 28 * DAY     # train and gate on the last ``window`` seconds (None: the whole past)
    init: str = "best"                  # one of INITS
    gate: str = "bhr"                   # one of GATES
    sizes: tuple[int, ...] = ()         # cache sizes of the bhr gate (bytes)
    holdout: float = DEFAULT_HOLDOUT    # the DAG's held-out share of the window's days
    max_rows: int = 1_000_000           # the most recent training rows beyond this are used

    def __post_init__(self):
        if self.init not in INITS:
            raise Invalid(f"retrain start must be one of {', '.join(INITS)}, not {self.init!r}")
        if self.gate not in GATES:
            raise Invalid(f"retrain gate must be one of {', '.join(GATES)}, not {self.gate!r}")
        if self.gate == "bhr" and not self.sizes:
            raise Invalid("the byte-hit-ratio retrain gate needs the cache sizes (or use gate 'nll')")
        if self.every <= 0 or (self.window is not None and self.window <= 0):
            raise Invalid("the retrain period and window must be positive")


@dataclass
class _Current:
    """The model that answers now: the frozen base (its scores precomputed) or a refitted Keras model."""
    ref: str
    weights: WT.Weights | None          # what the next candidate warm-starts from (None: cannot)
    reason: str = ""                    # why it cannot
    model: object = None                # None: the base model, scores in ``base_probs``
    base_probs: np.ndarray | None = None

    def predict(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.base_probs[rows] if self.model is None else NG.predict(self.model, x[rows])


class RetrainingScorer:
    """Scores a trace with ``base`` before ``plan.start``, then with the model the simulated retraining keeps."""

    kind = "next-gap"

    def __init__(self, base, plan: RetrainPlan, *, warm: C.WarmStart | None = None,
                 cfg: NG.NextGapConfig | None = None):
        if getattr(base, "kind", None) != "next-gap":
            raise Invalid(f"--retrain-every needs a next-read model (one made by `smartcache train`), "
                          f"not {getattr(base, 'ref', base)}")
        self.base, self.plan = base, plan
        self.warm = warm or C.WarmStart(base.ref, None, "the base model's weights were not given")
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
        site = ",".join(trace.site_names())
        cur = _Current(self.base.ref, self.warm.weights, self.warm.reason, base_probs=probs.copy())
        t, k = self.plan.start, 0
        while t <= trace.ts[-1]:
            span = np.flatnonzero((trace.ts >= t) & (trace.ts < t + self.plan.every))
            if len(span):
                k += 1
                step = {"step": k, "site": site, "at": _iso(t), **self._step(trace, x, gap, t, cur, k)}
                step["model"], step["scored"] = cur.ref, int(len(span))
                self.steps.append(step)
                log.info("retrain step %s", step)
                probs[span] = cur.predict(x, span)
            t += self.plan.every
        return probs

    # -- one step -----------------------------------------------------------------------------
    def _step(self, trace: Trace, x: np.ndarray, gap: np.ndarray, t: float, cur: _Current, k: int) -> dict:
        p, t0 = self.plan, time.perf_counter()
        lo = t - p.window if p.window else -np.inf
        past = np.flatnonzero((trace.ts >= lo) & (trace.ts < t))
        if p.gate == "none":
            held_from, train = t, past
        else:
            days = sorted({date.fromordinal(int(d) + 719163) for d in trace.days[past]})  # 719163: 1970-01-01
            if len(days) < 2:
                return _kept(0, f"the window has {len(days)} day(s): nothing to hold out")
            held_from = datetime.combine(held_out_day(days, p.holdout), datetime.min.time(),
                                         timezone.utc).timestamp()
            train = past[trace.ts[past] < held_from]
        train = train[-p.max_rows:]
        if len(train) < MIN_ROWS:
            return _kept(len(train), f"only {len(train)} requests to train on (at least {MIN_ROWS})")
        mask = H.gap_buckets(gap[train], held_from - trace.ts[train])
        fitted, cfg, init = self._fit(x[train], mask, cur)
        out = {"rows": int(len(train)), "epochs": fitted.epochs_run, **init}
        if p.gate == "none":
            better, why = True, "no gate: every refit replaces"
        else:
            out["held_out_from"] = _iso(held_from)
            cand = NG.predict(fitted.model, x[past])
            better, why, figures = self._judge(trace, past, held_from, t, gap, cur.predict(x, past), cand)
            out["gate"] = figures
        if better:
            ref = f"{self.base.ref}+r{k}"
            weights = WT.from_npz(WT.to_npz(fitted.model, hidden=cfg.hidden, feature_set=FEATURE_SET,
                                            features=ONLINE_FEATURES), ref)
            cur.ref, cur.model, cur.weights, cur.reason = ref, fitted.model, weights, ""
        return {**out, "seconds": round(time.perf_counter() - t0, 1),    # the fits and the gate
                "decision": "replaced" if better else "kept", "why": why}

    def _fit(self, x: np.ndarray, mask: np.ndarray, cur: _Current) -> tuple[NG.NextGapFit, NG.NextGapConfig, dict]:
        """The candidate: fresh, warm-started from the current model, or the better of both (the DAG's)."""
        init = self.plan.init
        if init == "fresh" or cur.weights is None:
            why = "fresh only" if init == "fresh" else f"fresh: {cur.reason}"
            return NG.fit(x, mask, self.cfg), self.cfg, {"start": why}
        if init == "warm":
            cfg = dataclasses.replace(self.cfg, hidden=cur.weights.hidden)
            return NG.fit(x, mask, cfg, init=cur.weights), cfg, {"start": f"warm from {cur.ref}"}
        fitted, cfg, info = C.fit_best(x, mask, self.cfg, C.WarmStart(cur.ref, cur.weights))
        w = info["warm_start"]
        return fitted, cfg, {"start": f"{w['chosen']} (validation loss fresh {w['val_loss_fresh']:.4f}, "
                                      f"warm from {cur.ref} {w.get('val_loss_warm', float('nan')):.4f})"}

    def _judge(self, trace: Trace, past: np.ndarray, held_from: float, t: float, gap: np.ndarray,
               current: np.ndarray, candidate: np.ndarray) -> tuple[bool, str, dict]:
        """(candidate better?, why, the figures) on the held-out days of the window."""
        held = trace.ts[past] >= held_from
        if self.plan.gate == "nll":
            rows = past[held]
            mask = H.gap_buckets(gap[rows], t - trace.ts[rows])     # censored at the present: no look-ahead
            a, b = _nll(current[held], mask), _nll(candidate[held], mask)
            return b < a, f"held-out censored NLL {b:.4f} {'<' if b < a else '>='} {a:.4f}", \
                {"nll_current": round(a, 5), "nll_candidate": round(b, 5), "held_out_rows": int(held.sum())}
        sub = trace.take(past)
        a = _bytes_hit(sub, current, held, self.plan.sizes, self.gap_edges)
        b = _bytes_hit(sub, candidate, held, self.plan.sizes, self.gap_edges)
        req = max(int(sub.size[held].sum()), 1)      # bytes requested on the held-out days, at each size
        ra, rb = float(a.sum() / (req * len(a))), float(b.sum() / (req * len(b)))
        figures = {"bhr_current": round(ra, 5), "bhr_candidate": round(rb, 5), "held_out_rows": int(held.sum()),
                   "by_size": {str(s): [round(float(u) / req, 5), round(float(v) / req, 5)]
                               for s, u, v in zip(self.plan.sizes, a, b)}}
        better = bool(b.sum() > a.sum())
        return better, f"held-out byte hit ratio {rb:.4f} {'>' if better else '<='} {ra:.4f}", figures


def _bytes_hit(sub: Trace, probs: np.ndarray, counted: np.ndarray, sizes, edges) -> np.ndarray:
    """Bytes hit among ``counted`` requests of ``sub`` replayed warm through the learned kernel, per size."""
    from smartcache.tasks.simulate import kernels as K
    from smartcache.tasks.simulate.core import replay
    from smartcache.tasks.simulate.model import NextGapScores
    scores = NextGapScores(np.ascontiguousarray(probs, np.float32), np.asarray(edges, np.float64))
    out = []
    for s in sizes:
        status = replay(sub, "model", int(s), scores=scores)
        out.append(int(sub.size[counted & (status == K.HIT)].sum()))
    return np.asarray(out, np.float64)


def _nll(probs: np.ndarray, mask: np.ndarray) -> float:
    return float(-np.mean(np.log(np.sum(probs * mask, axis=1) + 1e-7))) if len(probs) else 0.0


def _kept(rows: int, why: str) -> dict:
    return {"rows": int(rows), "seconds": 0.0, "decision": "kept", "why": why}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).date().isoformat()


def describe_steps(label: str, steps: list[dict]) -> list[str]:
    """One line per step, for the simulate command's output."""
    lines = [f"{label}: {sum(s['decision'] == 'replaced' for s in steps)} of {len(steps)} step(s) replaced the model"]
    for s in steps:
        lines.append(f"  {s['at']} {s['site']}: {s['rows']:,} rows, {s['seconds']:.0f} s, {s['decision']} "
                     f"({s['why']}{'; ' + s['start'] if 'start' in s else ''}) -> scores {s['scored']:,} "
                     f"requests with {s['model']}")
    return lines
