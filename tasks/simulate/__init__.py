"""SIMULATE: exact replay of a request trace through cache policies.

In: a :class:`~smartcache.tasks.common.trace.Trace`, policies, cache sizes (and scorers for the model
policy). Out: per-site, per-day hit and byte-hit metrics. :mod:`.kernels` holds the compiled policies
(numba) and :mod:`.heuristics` ARC, S3-FIFO and SIEVE, :mod:`.core` one replay and its metrics,
:mod:`.window` which requests are counted (``--from``), :mod:`.grid` sites x policies x sizes and the
gap closed, :mod:`.model` how a trained model plugs in, :mod:`.report` tables and plots (one colour
per policy), :mod:`.oracle` libCacheSim's trace format, :mod:`.synth` synthetic traces.
"""

from smartcache.tasks.simulate.core import POLICIES, Metrics, SimResult, parse_policies, replay, simulate
from smartcache.tasks.simulate.grid import gap_closed, run_grid, totals

__all__ = [
    "Metrics", "POLICIES", "SimResult", "gap_closed", "parse_policies", "replay", "run_grid", "simulate", "totals"
]
