"""How many elastic workers the pool should have: a pure decision function and its inputs.

Demand comes from the schedd (idle and running smartcache jobs and what they request), supply
from the collector (elastic workers, which of them run something, free slot capacity). The
decision adds workers at once when idle jobs do not fit the free capacity (at most every
``up_cooldown`` seconds), and removes idle workers only after the surplus has lasted
``idle_timeout`` seconds without a break (hysteresis: flapping demand never shrinks the pool,
so workers are not started and stopped over and over), and never below ``min_workers`` or above
``max_workers``. Nothing here talks to HTCondor: :mod:`smartcache.condor.provision` gathers the
inputs and applies the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

IDLE, RUNNING = 1, 2        # HTCondor JobStatus values


@dataclass(frozen=True)
class Policy:
    min_workers: int = 0
    max_workers: int = 10
    worker_cpus: int = 1
    worker_memory_mb: int = 2048
    up_cooldown: float = 10.0       # seconds between two scale-ups (new workers need time to appear)
    idle_timeout: float = 60.0      # a surplus must last this long before workers are removed
    down_cooldown: float = 0.0      # seconds after any change before a scale-down
    idle_grace: float = 0.0         # jobs idle for less than this are not demand yet

    def __post_init__(self) -> None:
        # Validated with exceptions: a Policy comes from user input (CLI options, config).
        from smartcache.catalog.errors import ConfigError
        if self.min_workers < 0 or self.max_workers < self.min_workers:
            raise ConfigError(f"need 0 <= min_workers <= max_workers, got {self.min_workers}..{self.max_workers}")
        if self.worker_cpus < 1 or self.worker_memory_mb < 1:
            raise ConfigError("a worker needs at least 1 CPU and 1 MB of memory")
        if min(self.up_cooldown, self.idle_timeout, self.down_cooldown, self.idle_grace) < 0:
            raise ConfigError("cooldowns and timeouts cannot be negative")


@dataclass(frozen=True)
class Demand:
    idle_jobs: int = 0
    idle_cpus: int = 0
    idle_memory_mb: int = 0
    running_jobs: int = 0
    unfit_jobs: int = 0             # idle jobs larger than one worker: more workers will not help

    @classmethod
    def from_jobs(cls, jobs: Iterable[Mapping], policy: Policy, now: float) -> "Demand":
        """Sum up job ads (JobStatus, RequestCpus, RequestMemory, EnteredCurrentStatus)."""
        idle = cpus = mem = running = unfit = 0
        for job in jobs:
            status = job.get("JobStatus")
            if status == RUNNING:
                running += 1
                continue
            if status != IDLE:
                continue
            since = next((job[k] for k in ("EnteredCurrentStatus", "QDate") if job.get(k) is not None), now)
            if now - float(since) < policy.idle_grace:
                continue
            c, m = _int(job.get("RequestCpus"), 1), _int(job.get("RequestMemory"), 0)
            if c > policy.worker_cpus or m > policy.worker_memory_mb:
                unfit += 1
                continue
            idle, cpus, mem = idle + 1, cpus + c, mem + m
        return cls(idle, cpus, mem, running, unfit)

    def __str__(self) -> str:
        return f"{self.idle_jobs} idle ({self.idle_cpus} cpu) / {self.running_jobs} running"


@dataclass(frozen=True)
class Supply:
    workers: int = 0                # elastic workers alive and not retiring (starting ones included)
    busy_workers: int = 0           # of those, how many run a job or have not reported yet
    free_cpus: int = 0              # free capacity on elastic workers, plus what starting ones bring
    free_memory_mb: int = 0
    retiring: int = 0               # told to stop, finishing their jobs

    def __str__(self) -> str:
        return f"{self.workers} workers ({self.busy_workers} busy, {self.free_cpus} cpu free)"


@dataclass(frozen=True)
class State:
    """What the decision remembers between cycles."""
    last_up: float | None = None
    last_change: float | None = None
    low_since: float | None = None  # since when the wanted count has stayed below the current one


@dataclass(frozen=True)
class Decision:
    target: int
    action: str                     # "up", "down" or "hold"
    reason: str
    wanted: int                     # what demand alone asks for, before cooldown/hysteresis
    state: State = field(default_factory=State)


def wanted_workers(demand: Demand, supply: Supply, policy: Policy) -> tuple[int, str]:
    """Workers needed for the current demand, within [min, max], and why."""
    need_cpus = demand.idle_cpus - supply.free_cpus
    need_mem = demand.idle_memory_mb - supply.free_memory_mb
    if demand.idle_jobs and (need_cpus > 0 or need_mem > 0):
        add = max(math.ceil(max(need_cpus, 0) / policy.worker_cpus),
                  math.ceil(max(need_mem, 0) / policy.worker_memory_mb), 1)
        wanted, why = supply.workers + add, f"{demand.idle_jobs} idle jobs need {add} more worker(s)"
    else:
        idle_workers = supply.workers - supply.busy_workers
        if demand.idle_jobs:        # keep what the waiting jobs will use
            spare = min(idle_workers, max(0, -need_cpus) // policy.worker_cpus)
        else:
            spare = idle_workers
        wanted = supply.workers - spare
        why = f"{spare} idle worker(s) not needed" if spare else "demand fits the workers"
    bounded = min(max(wanted, policy.min_workers), policy.max_workers)
    if bounded != wanted:
        why += f"; bounded to {bounded} ({policy.min_workers}..{policy.max_workers})"
    return bounded, why


def decide(demand: Demand, supply: Supply, policy: Policy, state: State, now: float) -> Decision:
    """The target worker count for this cycle, with its reason and the state for the next one."""
    current = supply.workers
    wanted, why = wanted_workers(demand, supply, policy)
    if wanted > current:
        state = replace(state, low_since=None)
        below_min = current < policy.min_workers
        if not below_min and state.last_up is not None and now - state.last_up < policy.up_cooldown:
            wait = policy.up_cooldown - (now - state.last_up)
            return Decision(current, "hold", f"{why}; scale-up cooldown, {wait:.0f}s left", wanted, state)
        return Decision(wanted, "up", why, wanted, State(last_up=now, last_change=now))
    if wanted == current:
        return Decision(current, "hold", why, wanted, replace(state, low_since=None))
    # wanted < current: shrink only once the surplus has lasted idle_timeout without a break
    low_since = state.low_since if state.low_since is not None else now
    state = replace(state, low_since=low_since)
    above_max = current > policy.max_workers
    if not above_max and now - low_since < policy.idle_timeout:
        wait = policy.idle_timeout - (now - low_since)
        return Decision(current, "hold", f"{why}; removing after {wait:.0f}s more of surplus", wanted, state)
    if not above_max and state.last_change is not None and now - state.last_change < policy.down_cooldown:
        return Decision(current, "hold", f"{why}; scale-down cooldown", wanted, state)
    return Decision(wanted, "down", why, wanted, State(last_up=state.last_up, last_change=now))


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
