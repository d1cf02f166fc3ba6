"""The autoscaler loop: observe demand and supply, decide, drive a backend, log and export metrics.

Library use::

    scaler = Autoscaler(cfg, Policy(max_workers=4), LocalBackend(root, worker_cpus=1))
    scaler.step()                 # one cycle; returns the Decision
    scaler.run(interval=5)        # until interrupted

The process's HTCondor client must point at the pool (``pool_env()``/``use_pool_config``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from smartcache.catalog.config import Config
from smartcache.catalog.errors import SmartcacheError
from smartcache.condor import collector, schedd
from smartcache.condor.autoscale import Decision, Demand, Policy, State, Supply, decide
from smartcache.condor.autoscale_log import append_decision
from smartcache.condor.workers import CommandBackend, LocalBackend, WorkerError

# smartcache's own node jobs (vanilla universe; the DAGMan job itself is a scheduler-universe job)
DEFAULT_CONSTRAINT = "JobUniverse == 5 && SmartcacheTask =!= undefined"
JOB_PROJECTION = ["ClusterId", "ProcId", "JobStatus", "RequestCpus", "RequestMemory",
                  "EnteredCurrentStatus", "QDate"]
COMMAND_STARTUP = 300.0     # seconds a worker asked of a command backend may take to appear


@dataclass
class Observation:
    demand: Demand
    supply: Supply
    idle_workers: list[str] = field(default_factory=list)      # removable first
    busy_workers: list[str] = field(default_factory=list)


class Metrics:
    """Prometheus gauges for one autoscaler (own registry; a text file and optional HTTP)."""

    def __init__(self, textfile: Path | None = None, port: int | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
        self.registry = CollectorRegistry()
        g = lambda name, doc: Gauge(f"smartcache_autoscale_{name}", doc, registry=self.registry)  # noqa: E731
        self.idle_jobs, self.running_jobs = g("idle_jobs", "Idle smartcache jobs"), g("running_jobs", "Running smartcache jobs")
        self.workers, self.busy = g("workers", "Elastic workers"), g("busy_workers", "Elastic workers running jobs")
        self.retiring = g("retiring_workers", "Elastic workers finishing their jobs before leaving")
        self.target, self.wanted = g("target_workers", "Decided worker count"), g("wanted_workers", "Worker count demand asks for")
        self.decisions = Counter("smartcache_autoscale_decisions", "Decisions by action", ["action"], registry=self.registry)
        self.textfile = textfile
        if port is not None:
            start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def record(self, obs: Observation, decision: Decision) -> None:
        from prometheus_client import write_to_textfile
        d, s = obs.demand, obs.supply
        self.idle_jobs.set(d.idle_jobs), self.running_jobs.set(d.running_jobs)
        self.workers.set(s.workers), self.busy.set(s.busy_workers), self.retiring.set(s.retiring)
        self.target.set(decision.target), self.wanted.set(decision.wanted)
        self.decisions.labels(decision.action).inc()
        if self.textfile is not None:
            self.textfile.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(self.textfile), self.registry)


class Autoscaler:
    def __init__(self, cfg: Config, policy: Policy, backend: LocalBackend | CommandBackend, *,
                 constraint: str = DEFAULT_CONSTRAINT, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time, log_home: Path | None = None):
        self.cfg, self.policy, self.backend, self.constraint = cfg, policy, backend, constraint
        self.metrics, self.clock = metrics, clock
        self.log_home = log_home if log_home is not None else cfg.home
        self.state = State()
        self.last_target: int | None = None        # command backend: what we last asked for
        self.history: list[dict] = []              # this process's decisions (the log has all)

    # -- observe -----------------------------------------------------------------------------
    def observe(self) -> Observation:
        now = self.clock()
        jobs = schedd.query_jobs(self.constraint, JOB_PROJECTION, self.cfg)
        demand = Demand.from_jobs(jobs, self.policy, now)
        slots = [s for s in collector.query_slots(self.cfg.condor, "SmartcacheElastic =?= True") if s.worker]
        by_worker: dict[str, list[collector.Slot]] = {}
        for s in slots:
            by_worker.setdefault(s.worker, []).append(s)
        if isinstance(self.backend, LocalBackend):
            return self._observe_local(demand, by_worker)
        return self._observe_seen(demand, by_worker, now)

    def _observe_local(self, demand: Demand, by_worker: dict[str, list]) -> Observation:
        p = self.policy
        live = self.backend.workers()
        active = [w for w in live if not w.retiring]
        idle, busy, free_cpus, free_mem = [], [], 0, 0
        for w in reversed(active):                 # newest first: they are removed first
            ads = by_worker.get(w.name)
            if not ads:                             # starting: not removable, capacity on its way
                busy.append(w.name)
                free_cpus, free_mem = free_cpus + p.worker_cpus, free_mem + p.worker_memory_mb
                continue
            free_cpus += sum(s.free_cpus for s in ads if not s.dynamic)
            free_mem += sum(s.free_memory_mb for s in ads if not s.dynamic)
            (busy if any(s.busy for s in ads) else idle).append(w.name)
        supply = Supply(len(active), len(busy), free_cpus, free_mem, retiring=len(live) - len(active))
        return Observation(demand, supply, idle, busy)

    def _observe_seen(self, demand: Demand, by_worker: dict[str, list], now: float) -> Observation:
        p = self.policy
        busy = sorted(n for n, ads in by_worker.items() if any(s.busy for s in ads))
        idle = sorted(n for n in by_worker if n not in busy)
        free_cpus = sum(s.free_cpus for ads in by_worker.values() for s in ads if not s.dynamic)
        free_mem = sum(s.free_memory_mb for ads in by_worker.values() for s in ads if not s.dynamic)
        pending = 0
        if self.last_target is not None and self.state.last_up is not None and now - self.state.last_up < COMMAND_STARTUP:
            pending = max(0, self.last_target - len(by_worker))
        supply = Supply(len(by_worker) + pending, len(busy) + pending,
                        free_cpus + pending * p.worker_cpus, free_mem + pending * p.worker_memory_mb)
        return Observation(demand, supply, idle, busy)

    # -- act ---------------------------------------------------------------------------------
    def step(self) -> Decision:
        """One cycle: observe, decide, apply, log. Errors of one cycle are logged, not raised."""
        now = self.clock()
        try:
            obs = self.observe()
        except SmartcacheError as e:
            return self._log_error(now, f"cannot observe the pool: {e}")
        decision = decide(obs.demand, obs.supply, self.policy, self.state, now)
        self.state = decision.state
        done = ""
        try:
            done = self._apply(decision, obs)
        except WorkerError as e:
            done = f"failed: {e}"
        self._log(now, obs, decision, done)
        return decision

    def _apply(self, decision: Decision, obs: Observation) -> str:
        current = obs.supply.workers
        if isinstance(self.backend, CommandBackend):
            if decision.action == "hold" and self.last_target is not None:
                return ""
            self.last_target = decision.target
            out = self.backend.scale_to(decision.target)
            return f"ran scaling command for {decision.target}" + (f": {out[:200]}" if out else "")
        if isinstance(self.backend, LocalBackend):
            self.backend.reap()
        if decision.action == "up":
            started = [self.backend.start_worker().name for _ in range(decision.target - current)]
            return "started " + ", ".join(started)
        if decision.action == "down":
            # idle workers first; busy ones only when above max (a peaceful shutdown waits for their jobs)
            victims = (obs.idle_workers + obs.busy_workers)[: current - decision.target]
            for name in victims:
                self.backend.retire(name)
            return "retiring " + ", ".join(victims)
        return ""

    def _log(self, now: float, obs: Observation, decision: Decision, done: str) -> None:
        rec = {"time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
               "demand": str(obs.demand), "supply": str(obs.supply), "workers": obs.supply.workers,
               "busy": obs.supply.busy_workers, "retiring": obs.supply.retiring,
               "idle_jobs": obs.demand.idle_jobs, "running_jobs": obs.demand.running_jobs,
               "wanted": decision.wanted, "target": decision.target, "action": decision.action,
               "reason": decision.reason + (f"; {done}" if done else ""), "backend": self.backend.name}
        self.history.append(rec)
        if decision.action != "hold" or not self.history[:-1] or self.history[-2]["reason"] != rec["reason"]:
            append_decision(self.log_home, rec)     # a repeated identical hold is not logged again
        if self.metrics is not None:
            self.metrics.record(obs, decision)

    def _log_error(self, now: float, message: str) -> Decision:
        d = Decision(self.last_target or 0, "error", message, 0, self.state)
        append_decision(self.log_home, {"time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
                                        "action": "error", "reason": message, "backend": self.backend.name})
        return d

    def run(self, interval: float = 5.0, *, cycles: int | None = None, quiet: bool = False) -> None:
        """Cycle every ``interval`` seconds, ``cycles`` times or until interrupted."""
        n = 0
        while cycles is None or n < cycles:
            d = self.step()
            if not quiet and d.action != "hold":
                print(f"[autoscale] {d.action} -> {d.target}: {d.reason}", file=sys.stderr)
            n += 1
            if cycles is None or n < cycles:
                time.sleep(interval)
