"""Elastic workers on the project's real pool: time to the first elastic match, and DAG makespan
with and without the autoscaler. Two baselines, same DAG: the static base startd alone (what the
autoscaler adds), and the strongest one, a static pool already holding the autoscaler's peak number
of workers before the DAG is submitted (what elasticity costs against capacity paid for in advance).

Needs root (it brings the local pool up, or reuses a running one)::

    python benchmarks/bench_autoscale.py --nodes 12 --seconds 10 --max-workers 4 --worker-cpus 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from smartcache.catalog.config import load_config
from smartcache.condor import collector, pool
from smartcache.condor.autoscale import Policy
from smartcache.condor.provision import Autoscaler
from smartcache.condor.workers import LocalBackend

SUB = """universe = vanilla
executable = /bin/sleep
arguments = $(secs)
log = $(node).log
request_cpus = 1
request_memory = 64M
request_disk = 1M
batch_name = smartcache-bench-autoscale
+SmartcacheRun = "bench-autoscale"
+SmartcacheTask = "sleep"
queue
"""


def write_dag(d: Path, nodes: int, seconds: int) -> Path:
    d.mkdir(parents=True)
    d.chmod(0o755)
    (d / "node.sub").write_text(SUB)
    lines = []
    for i in range(nodes):
        lines += [f"JOB n{i} node.sub", f'VARS n{i} secs="{seconds}" node="n{i}"']
    (d / "fan.dag").write_text("\n".join(lines) + "\n")
    return d / "fan.dag"


def run_dag(d: Path, nodes: int, seconds: int, scaler: Autoscaler | None, timeout: float) -> dict:
    """Submit the DAG, step the autoscaler (if any) every second until the DAG is done."""
    import htcondor2
    schedd = htcondor2.Schedd()
    sub = htcondor2.Submit.from_dag(str(write_dag(d, nodes, seconds)), {"force": True, "usedagdir": True})
    t0 = time.monotonic()
    cluster = schedd.submit(sub).cluster()
    first_worker = first_elastic_run = first_node = None
    peak = 0
    while time.monotonic() - t0 < timeout:
        if scaler is not None:
            scaler.step()
        slots = collector.query_slots(None, "SmartcacheElastic =?= True")
        workers = {s.worker for s in slots}
        peak = max(peak, len(workers))
        if workers and first_worker is None:
            first_worker = time.monotonic() - t0
        if first_elastic_run is None and any(s.busy for s in slots):
            first_elastic_run = time.monotonic() - t0
        if first_node is None and schedd.query(f"DAGManJobId == {cluster}", ["JobStatus"], limit=1):
            first_node = time.monotonic() - t0
        if not schedd.query(f"ClusterId == {cluster}", ["JobStatus"]):
            break
        time.sleep(1)
    else:
        schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {cluster} || DAGManJobId == {cluster}")
        raise SystemExit(f"DAG not done after {timeout}s")
    makespan = time.monotonic() - t0
    ok = "EXITING WITH STATUS 0" in (d / "fan.dag.dagman.out").read_text()
    return {"makespan_s": round(makespan, 1), "dag_ok": ok, "first_node_queued_s": _r(first_node),
            "first_worker_ad_s": _r(first_worker),
            "first_elastic_job_s": _r(first_elastic_run), "peak_workers": peak}


def drain(scaler: Autoscaler, backend: LocalBackend, timeout: float) -> float:
    """Keep stepping until the idle workers are gone; returns how long that took."""
    t0 = time.monotonic()
    while (backend.workers() or collector.query_slots(None, "SmartcacheElastic =?= True")) \
            and time.monotonic() - t0 < timeout:
        scaler.step()
        time.sleep(1)
    return round(time.monotonic() - t0, 1)


def static_peak(backend: LocalBackend, d: Path, nodes: int, seconds: int, workers: int, timeout: float) -> dict:
    """The DAG on a pool that already has ``workers`` elastic workers (started and reporting first)."""
    for _ in range(workers):
        backend.start_worker()
    t0 = time.monotonic()
    while len({s.worker for s in collector.query_slots(None, "SmartcacheElastic =?= True")}) < workers:
        if time.monotonic() - t0 > 120:
            backend.stop_all()
            raise SystemExit("static workers did not report to the collector within 120 s")
        time.sleep(1)
    try:
        return run_dag(d, nodes, seconds, None, timeout)
    finally:
        backend.stop_all()
        while collector.query_slots(None, "SmartcacheElastic =?= True") and time.monotonic() - t0 < timeout:
            time.sleep(1)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", help="pool chroot [SMARTCACHE_POOL_ROOT or /opt/smartcache-pool]")
    ap.add_argument("--nodes", type=int, default=12)
    ap.add_argument("--seconds", type=int, default=10, help="runtime of each node")
    ap.add_argument("--max-workers", type=int, default=4)
    ap.add_argument("--worker-cpus", type=int, default=2)
    ap.add_argument("--idle-timeout", type=float, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    reason = pool.cannot_run_reason()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 0
    status = pool.pool_up(args.root, quiet=True)
    pool.activate_pool_env(status.root)
    base_cpus = sum(s.cpus for s in status.slots if not s.elastic and s.partitionable)
    backend = LocalBackend(status.root, worker_cpus=args.worker_cpus, worker_memory_mb=1024,
                           idle_timeout=args.idle_timeout + 60)
    if backend.workers():
        print("elastic workers are already running; stop them first", file=sys.stderr)
        return 1
    timeout = 20 * args.seconds + 180
    with tempfile.TemporaryDirectory(prefix="smartcache-bench-autoscale-", dir="/tmp") as tmp:
        tmp_path = Path(tmp)
        tmp_path.chmod(0o755)
        cfg = load_config(env={}, home=tmp_path / "home")
        baseline = run_dag(tmp_path / "static", args.nodes, args.seconds, None, timeout)
        peak = static_peak(backend, tmp_path / "peak", args.nodes, args.seconds, args.max_workers, timeout)
        policy = Policy(max_workers=args.max_workers, worker_cpus=args.worker_cpus, worker_memory_mb=1024,
                        up_cooldown=2, idle_timeout=args.idle_timeout)
        scaler = Autoscaler(cfg, policy, backend)
        elastic = run_dag(tmp_path / "elastic", args.nodes, args.seconds, scaler, timeout)
        elastic["scale_down_s"] = drain(scaler, backend, args.idle_timeout + 120)
    result = {"nodes": args.nodes, "node_seconds": args.seconds, "base_cpus": base_cpus,
              "max_workers": args.max_workers, "worker_cpus": args.worker_cpus,
              "static": baseline, "static_peak": peak, "autoscaled": elastic,
              "makespan_ratio": round(elastic["makespan_s"] / baseline["makespan_s"], 2),
              "makespan_ratio_peak": round(elastic["makespan_s"] / peak["makespan_s"], 2)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"DAG of {args.nodes} x {args.seconds}s nodes; base startd {base_cpus} cpu; "
          f"autoscaler up to {args.max_workers} x {args.worker_cpus} cpu")
    print(f"  static base startd             makespan {baseline['makespan_s']:6.1f} s")
    print(f"  static, {args.max_workers} workers up beforehand   makespan {peak['makespan_s']:6.1f} s   "
          f"(strongest baseline)")
    print(f"  with autoscaler                makespan {elastic['makespan_s']:6.1f} s   "
          f"{result['makespan_ratio']:.2f} x the base startd's, {result['makespan_ratio_peak']:.2f} x the "
          f"pre-provisioned pool's")
    print(f"  from DAG submit: first node queued {elastic['first_node_queued_s']} s, first worker ad "
          f"{elastic['first_worker_ad_s']} s, first job on an elastic worker {elastic['first_elastic_job_s']} s; "
          f"peak {elastic['peak_workers']} workers; idle workers gone {elastic['scale_down_s']} s after the DAG")
    return 0 if baseline["dag_ok"] and peak["dag_ok"] and elastic["dag_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
