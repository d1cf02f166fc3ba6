"""The retrain gate: a new version must beat the production model *and* the heuristics to replace it.

:func:`retrain_verdict` adds to :func:`~smartcache.tasks.evaluate.task.promotion_verdict` (LRU and the best
other heuristic) the production version, replayed as a second model policy on the same held-out requests
(``evaluate --baseline-model NAME:VERSION``): the new version is promoted only if its byte hit ratio at the
sites' cache sizes is above both, and the reason says who won by how much.
"""

from __future__ import annotations

from typing import Sequence

from smartcache.tasks.evaluate.task import byte_hit_ratio, promotion_verdict, verdict_rows
from smartcache.tasks.simulate.core import SimResult


def retrain_verdict(results: Sequence[SimResult], model_policy: str, production_policy: str | None,
                    production_ref: str | None = None) -> tuple[bool, str]:
    """(promote?, reason) for ``model_policy`` against ``production_policy`` (None: there is no production
    version) and the heuristics evaluated."""
    ok, reason = promotion_verdict(results, model_policy)
    if production_policy is None:
        return ok, reason + " (no production version to beat)"
    rows, where = verdict_rows(results)
    m, p = byte_hit_ratio(rows, model_policy), byte_hit_ratio(rows, production_policy)
    who = f"the production model {production_ref or production_policy.partition(':')[2]}"
    if m is None or p is None:
        return False, f"no results for {model_policy} or {who} to compare"
    if m <= p:
        return False, (f"byte hit ratio {m:.4f} does not beat {who}'s {p:.4f} (short by {p - m:.4f}) at {where} on "
                       f"held-out days; against the heuristics: {reason}")
    if not ok:
        return False, f"{reason}; it does beat {who}'s {p:.4f} (by {m - p:+.4f})"
    return True, f"beats {who}'s byte hit ratio {p:.4f} (by {m - p:+.4f}); {reason}"
