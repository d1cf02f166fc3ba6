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
                    scores = score_requests(scorers[policy], sub.table())
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


def gap_closed(results: Sequence[SimResult], policy: str, low: str = "lru", high: str = "belady") -> float | None:
    """Mean fraction of the ``low`` -> ``high`` byte-hit gap that ``policy`` closes over matching rows."""
    index = {(r.site, r.policy, r.cache_size): r.overall.byte_hit_ratio for r in results}
    fractions = []
    for (site, p, size), value in index.items():
        if p != policy or (site, low, size) not in index or (site, high, size) not in index:
            continue
        gap = index[(site, high, size)] - index[(site, low, size)]
        if gap > 0:
            fractions.append((value - index[(site, low, size)]) / gap)
    return float(np.mean(fractions)) if fractions else None
