"""Run many simulations: sites x policies x cache sizes, with scorers for the model policy."""

from __future__ import annotations

import sys
from typing import Callable, Mapping, Sequence

import numpy as np

from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.common.trace import Trace
from smartcache.tasks.simulate import kernels as K
from smartcache.tasks.simulate.core import SimResult, combine, parse_policies, simulate
from smartcache.tasks.simulate.model import Scorer, score_requests, threshold_of

SizesFor = Callable[[str, Trace], Sequence[int]]


def run_grid(trace: Trace, policies: Sequence[str] | str, cache_sizes: Sequence[int] | SizesFor, *,
             sites: Sequence[str] | None = None, scorers: Mapping[str, Scorer] | None = None,
             threshold: float | None = None, count_from: float | None = None, aging: bool = True,
             progress: bool | None = None) -> list[SimResult]:
    """Simulate every (site, policy, cache size); each site replays only its own requests.

    ``cache_sizes`` is a list of bytes used for every site, or a function ``(site, site_trace) -> sizes``
    (e.g. the site's catalog size and fractions of its working set). ``scorers`` maps a policy label
    (``"model:NAME"``) to its :data:`Scorer`; plain ``"model"`` uses the trace's ``score`` column.
    ``threshold`` overrides each scorer's own operating point (default 0.5).
    """
    policies = parse_policies(policies)
    scorers = dict(scorers or {})
    for p in policies:
        if p.startswith("model:") and p not in scorers:
            raise SmartcacheError(f"no scorer loaded for {p}")
        if p == "model" and trace.score is None:
            raise SmartcacheError("policy 'model' needs a score column in the trace (or use model:NAME)")
    names = list(sites) if sites else trace.site_names()
    jobs = []
    for site in names:
        sub = trace.for_site(site)
        sizes = cache_sizes(site, sub) if callable(cache_sizes) else cache_sizes
        jobs.append((site, sub, [int(s) for s in sizes]))
    total = sum(len(policies) * len(sizes) for _, _, sizes in jobs)
    bar = _progress(total, progress)
    results: list[SimResult] = []
    try:
        for site, sub, sizes in jobs:
            nxt = K.next_access(sub.obj) if any(p.startswith("belady") for p in policies) else None
            for policy in policies:
                scores, thr = None, 0.5 if threshold is None else threshold
                if policy.startswith("model:"):
                    scores = score_requests(scorers[policy], sub)
                    thr = threshold_of(scorers[policy]) if threshold is None else threshold
                for size in sizes:
                    r = simulate(sub, policy, size, site=site, scores=scores, threshold=thr, aging=aging,
                                 count_from=count_from, nxt=nxt)
                    results.append(r)
                    bar.update(1)
    finally:
        bar.close()
    return results


def totals(results: Sequence[SimResult]) -> list[SimResult]:
    """One ``*`` row per (policy, size rank) summing all sites, when there is more than one site."""
    sites = sorted({r.site for r in results})
    if len(sites) < 2:
        return []
    groups: dict[tuple[str, int], list[SimResult]] = {}
    for site in sites:
        rows = [r for r in results if r.site == site]
        for policy in dict.fromkeys(r.policy for r in rows):
            for rank, r in enumerate(x for x in rows if x.policy == policy):
                groups.setdefault((policy, rank), []).append(r)
    return [combine(rs) for rs in groups.values()]


class _NoBar:
    """Stands in for a tqdm bar when progress is off: both calls do nothing."""

    def update(self, n: int) -> None:
        return None

    def close(self) -> None:
        return None


def _progress(total: int, enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled or total < 2:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc="simulate", unit="run", file=sys.stderr, leave=False)


HEURISTICS = ("lru", "lfu", "gdsf", "arc", "s3fifo", "sieve")   # what an operator can switch on without us
GAP_DEFINITION = "(policy - {low}) / (Belady - {low}) in byte hit ratio, at the same site and cache size"


def is_heuristic(policy: str) -> bool:
    return policy in HEURISTICS


def gap_fraction(value: float, low: float, high: float) -> float | None:
    """Share of the ``low`` -> ``high`` gap that ``value`` closes; None when there is no gap to close."""
    return (value - low) / (high - low) if high > low else None


def best_of(by_policy: Mapping[str, float], exclude: str | None = None) -> tuple[str, float] | None:
    """The heuristic with the highest value (ties: the first in :data:`HEURISTICS` order)."""
    found = [(p, by_policy[p]) for p in HEURISTICS if p in by_policy and p != exclude]
    return max(found, key=lambda pv: pv[1]) if found else None


def gap_rows(results: Sequence[SimResult], policy: str, low: str = "lru", high: str = "belady") -> list[dict]:
    """Per (site, cache size) row: the byte hit ratios of ``policy``, ``low`` and ``high`` and the share
    of the gap closed. ``low="best"`` takes, row by row, the best heuristic other than ``policy``.
    Rows without ``policy``, ``low`` or ``high``, or where ``high`` is not above ``low``, are left out."""
    table: dict[tuple[str, int], dict[str, float]] = {}
    for r in results:
        table.setdefault((r.site, r.cache_size), {})[r.policy] = r.overall.byte_hit_ratio
    rows = []
    for (site, size), by_policy in table.items():
        if policy not in by_policy or high not in by_policy:
            continue
        ref = best_of(by_policy, exclude=policy) if low == "best" else (
            (low, by_policy[low]) if low in by_policy else None)
        if ref is None:
            continue
        fraction = gap_fraction(by_policy[policy], ref[1], by_policy[high])
        if fraction is not None:
            rows.append({"site": site, "cache_size": size, "policy": policy, "value": by_policy[policy],
                         "low": ref[0], "low_value": ref[1], "high": high, "high_value": by_policy[high],
                         "fraction": fraction})
    return rows


def gap_closed(results: Sequence[SimResult], policy: str, low: str = "lru", high: str = "belady") -> float | None:
    """Unweighted mean over the (site, cache size) rows of :func:`gap_rows` (each row counts once)."""
    rows = gap_rows(results, policy, low, high)
    return float(np.mean([r["fraction"] for r in rows])) if rows else None
