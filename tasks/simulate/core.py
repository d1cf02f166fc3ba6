"""Exact, fast cache simulation of a trace: LRU, LFU, GDSF, ARC, S3-FIFO, SIEVE, Belady and a model policy.

A trace is the CSV of ARCHITECTURE.md §5 (``timestamp,site,lfn,size``: epoch seconds, bytes), or any
arrays of the same meaning. File names are encoded to dense integer ids once; each policy then runs as
a compiled kernel (:mod:`smartcache.tasks.simulate.kernels`, :mod:`smartcache.tasks.simulate.heuristics`).
Each site has its own cache: a replay only sees the site's own requests. Cache capacity is in bytes; an object larger than the cache is a miss
and is never stored.

Metrics, per day (UTC) and overall: requests, hits, hit ratio, bytes requested, bytes hit (byte hit
ratio), bytes written into the cache (misses that were stored), and bytes read from remote (WAN: every
miss byte, stored or not).

The model policy gets its scores from a :data:`Scorer` (see :mod:`smartcache.tasks.simulate.model`) or from
a ``score`` column of the trace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Iterable, Sequence

import numpy as np

from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.common.trace import DAY, Trace
from smartcache.tasks.simulate import heuristics as HK
from smartcache.tasks.simulate import kernels as K
from smartcache.tasks.simulate import learned as L
from smartcache.tasks.simulate.model import NextGapScores

POLICIES = ("lru", "lfu", "gdsf", "arc", "s3fifo", "sieve", "belady", "belady-bypass", "model")
DEFAULT_POLICIES = "lru,lfu,gdsf,arc,s3fifo,belady"
_CHOICES = ", ".join(POLICIES) + ", model:NAME"


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metrics:
    requests: int
    hits: int
    bytes_requested: int
    bytes_hit: int
    bytes_written: int

    @property
    def bytes_remote(self) -> int:
        return self.bytes_requested - self.bytes_hit

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def byte_hit_ratio(self) -> float:
        return self.bytes_hit / self.bytes_requested if self.bytes_requested else 0.0

    def __add__(self, other: "Metrics") -> "Metrics":
        return Metrics(self.requests + other.requests, self.hits + other.hits,
                       self.bytes_requested + other.bytes_requested, self.bytes_hit + other.bytes_hit,
                       self.bytes_written + other.bytes_written)

    def to_dict(self) -> dict:
        return {"requests": self.requests, "hits": self.hits, "hit_ratio": self.hit_ratio,
                "bytes_requested": self.bytes_requested, "bytes_hit": self.bytes_hit,
                "byte_hit_ratio": self.byte_hit_ratio, "bytes_written": self.bytes_written,
                "bytes_remote": self.bytes_remote}


ZERO = Metrics(0, 0, 0, 0, 0)


@dataclass(frozen=True)
class SimResult:
    site: str
    policy: str
    cache_size: int
    overall: Metrics
    per_day: tuple[tuple[date, Metrics], ...]
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self, per_day: bool = False) -> dict:
        d = {"site": self.site, "policy": self.policy, "cache_size": self.cache_size, **self.overall.to_dict(),
             **self.extra}
        if per_day:
            d["per_day"] = [{"day": day.isoformat(), **m.to_dict()} for day, m in self.per_day]
        return d


def parse_policies(text: str | Sequence[str]) -> list[str]:
    """``"lru,lfu,model:NAME"`` -> ``["lru", "lfu", "model:NAME"]``, validated."""
    items = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    if not items:
        raise SmartcacheError(f"no cache policy given (choose from {_CHOICES})")
    out = []
    for p in items:
        base, sep, name = p.partition(":")
        base = base.lower()
        if base not in POLICIES or (sep and (base != "model" or not name)):
            raise SmartcacheError(f"unknown cache policy {p!r} (choose from {_CHOICES})")
        out.append(f"{base}:{name}" if name else base)
    return list(dict.fromkeys(out))   # a policy named twice runs once


def replay(trace: Trace, policy: str, capacity: int, *, scores: np.ndarray | NextGapScores | None = None,
           threshold: float = 0.5, aging: bool = True, nxt: np.ndarray | None = None) -> np.ndarray:
    """Run one policy; returns the status of every request (``sim_policies.MISS|INSERT|HIT``)."""
    if capacity < 0:
        raise SmartcacheError(f"cache size must not be negative: {capacity}")
    base = policy.split(":", 1)[0]
    obj, size, cap, n_obj = trace.obj, trace.size, np.int64(capacity), max(trace.n_obj, 1)
    out = np.empty(len(trace), np.int8)
    if len(trace) == 0:
        return out
    if base == "lru":
        K.lru_kernel(obj, size, cap, n_obj, out)
    elif base in ("belady", "belady-bypass"):
        nxt = K.next_access(obj) if nxt is None else nxt
        K.belady_kernel(obj, size, nxt, cap, n_obj, out, base == "belady-bypass")
    elif base in HK.KERNELS:
        HK.KERNELS[base](obj, size, cap, n_obj, out)
    elif base in ("lfu", "gdsf"):
        mode = K.LFU_MODE if base == "lfu" else K.GDSF_MODE
        K.priority_kernel(obj, size, cap, n_obj, out, mode, _NO_SCORES, 0.0, False)
    elif base == "model":
        if scores is None:
            scores = trace.score
        if scores is None or len(scores) != len(trace):
            raise SmartcacheError("the model policy needs one score per request (a scorer, or a score column)")
        if isinstance(scores, NextGapScores):
            L.learned_kernel(obj, size, trace.ts, scores.probs, scores.edges, cap, n_obj, out, L.DEFAULT_SAMPLES, 0,
                             True, True, 1.0, _NO_USED)
            return out
        K.priority_kernel(obj, size, cap, n_obj, out, K.MODEL_MODE, np.ascontiguousarray(scores, np.float64),
                          float(threshold), bool(aging))
    else:
        raise SmartcacheError(f"unknown cache policy {policy!r}")
    return out


_NO_SCORES = np.zeros(1, np.float64)
_NO_USED = np.zeros(0, np.int64)


def day_metrics(trace: Trace, status: np.ndarray, counted: np.ndarray | None = None
                ) -> tuple[Metrics, tuple[tuple[date, Metrics], ...]]:
    """Overall and per-day metrics of a replay; ``counted`` masks warm-up requests out."""
    days, size = trace.days, trace.size
    if counted is not None:
        days, size, status = days[counted], size[counted], status[counted]
    if len(days) == 0:
        return ZERO, ()
    # requests are in time order, so each day is one contiguous run: exact integer sums per run
    starts = np.concatenate(([0], np.flatnonzero(np.diff(days)) + 1))
    hit = status == K.HIT
    cols = [np.diff(np.append(starts, len(days))), np.add.reduceat(hit.astype(np.int64), starts),
            np.add.reduceat(size, starts), np.add.reduceat(np.where(hit, size, 0), starts),
            np.add.reduceat(np.where(status == K.INSERT, size, 0), starts)]
    rows = tuple((_date(int(days[s])), Metrics(*(int(c[j]) for c in cols))) for j, s in enumerate(starts))
    overall = Metrics(*(int(c.sum()) for c in cols))
    return overall, rows


def _date(day_number: int) -> date:
    return datetime.fromtimestamp(day_number * DAY, tz=timezone.utc).date()


def simulate(trace: Trace, policy: str, capacity: int, *, site: str = "*", scores: np.ndarray | None = None,
             threshold: float = 0.5, aging: bool = True, count_from: float | None = None,
             nxt: np.ndarray | None = None) -> SimResult:
    """Replay ``trace`` (one site's requests) through one policy; metrics from ``count_from`` (epoch s) on."""
    t0 = time.perf_counter()
    status = replay(trace, policy, capacity, scores=scores, threshold=threshold, aging=aging, nxt=nxt)
    seconds = time.perf_counter() - t0
    counted = None if count_from is None else trace.ts >= count_from
    overall, per_day = day_metrics(trace, status, counted)
    return SimResult(site, policy, int(capacity), overall, per_day, seconds)


def combine(results: Iterable[SimResult], site: str = "*") -> SimResult:
    """Sum results of several sites (one policy) into one row; its cache size is the sites' total."""
    results = list(results)
    if not results:
        raise SmartcacheError("nothing to combine")
    overall = sum((r.overall for r in results), ZERO)
    by_day: dict[date, Metrics] = {}
    for r in results:
        for d, m in r.per_day:
            by_day[d] = by_day.get(d, ZERO) + m
    return SimResult(site, results[0].policy, sum(r.cache_size for r in results), overall,
                     tuple(sorted(by_day.items())), sum(r.seconds for r in results))
