"""DAG overheads: submitting a 6-month daily reduce DAG to the real pool, and the local executor's per-node cost.

1. condor: list ~180 daily partitions, build the reduce DAG (htcondor2.dags), write it, and submit it
   (``Submit.from_dag`` + ``Schedd.submit``), each step timed; baseline: the same steps for a 1-day DAG.
   The DAGMan job is removed right after submission (nothing runs: the partitions are empty files).
   Needs a reachable schedd (the project's pool: ``smartcache pool up``); skipped otherwise.
2. local: N nodes of the noop task on the embedded local executor (each node a ``python -m``
   process, as DAGMan would start it) vs the same task function called N times in a plain loop.
   Per-node overhead = (executor time - loop time) / N, with 1 CPU (sequential) and all CPUs.

    python benchmarks/bench_dag.py [--months 6] [--nodes 40] [--no-condor]
"""

from __future__ import annotations

import argparse
import calendar
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smartcache.catalog.config import load_config
from smartcache.condor import dag as dagmod
from smartcache.condor import local, schedd
from smartcache.condor.submitdesc import batch_name
from smartcache.submit import workflows as W
from smartcache.tasks import noop


def fake_raw(root: Path, months: int, end: tuple[int, int] = (2026, 10)) -> int:
    """Empty daily partitions for ``months`` months ending with ``end``: enough to list and plan."""
    n = 0
    year, month = end
    for back in range(months):
        idx = year * 12 + month - 1 - back
        y, m = idx // 12, idx % 12 + 1
        for d in range(1, calendar.monthrange(y, m)[1] + 1):
            p = root / f"year={y}/month={m}/day={d}/part-00000.avro"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
            n += 1
    return n


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def condor_submit_once(cfg, months: int, work: Path, label: str) -> dict:
    """List, build, write and submit one reduce DAG; remove the DAGMan job; return the timings."""
    plan, t_plan = timed(W.reduce, cfg, months=months, end="2026-10" if months > 1 else None)
    wf = plan.make(1)
    dag_dir = work / f"dag-{label}"
    dag, t_build = timed(dagmod.build, wf, dag_dir)
    dag_file, t_write = timed(dagmod.write, dag, dag_dir)
    cluster, t_submit = timed(schedd.submit_dag, dag_file, cfg, batch_name=batch_name("bench", 1))
    schedd.remove(cluster, cfg, reason="benchmark: submission only")
    return {"nodes": wf.n_nodes, "plan": t_plan, "build": t_build, "write": t_write, "submit": t_submit,
            "total": t_plan + t_build + t_write + t_submit}


def bench_condor(months: int, work: Path) -> None:
    cfg = load_config(env={"SMARTCACHE_HOME": str(work / "home"), "SMARTCACHE_DATA": str(work / "data")})
    if not schedd.available(cfg):
        from smartcache.condor import pool
        if pool.master_pid() is not None:
            pool.activate_pool_env()
    if not schedd.available(cfg):
        print("condor: no schedd reachable (smartcache pool up?) -- skipped")
        return
    fake_raw(cfg.data_root / "raw", months)
    one_day = work / "one"
    (one_day / "year=2026/month=10/day=1").mkdir(parents=True)
    (one_day / "year=2026/month=10/day=1/part-00000.avro").touch()
    base_cfg = cfg.with_overrides(data_root=work / "one-root")
    (work / "one-root").mkdir()
    (work / "one-root" / "raw").symlink_to(one_day)
    condor_submit_once(base_cfg, 1, work, "warmup")                      # first bindings call pays config
    base = condor_submit_once(base_cfg, 1, work, "base")
    big = condor_submit_once(cfg, months, work, "big")
    print(f"condor: {months}-month daily reduce DAG, {big['nodes'] - 1} reduce nodes + features, "
          f"MAXJOBS reduce {cfg.condor.max_jobs}; baseline: a 1-day DAG (2 nodes)")
    print(f"  {'step':8} {'1 day':>10} {f'{months} months':>12}")
    for step in ("plan", "build", "write", "submit", "total"):
        print(f"  {step:8} {base[step] * 1e3:8.1f}ms {big[step] * 1e3:10.1f}ms")
    print(f"  ratio total {big['total'] / base['total']:.1f}x for {big['nodes'] / base['nodes']:.0f}x the nodes;"
          f" per extra node {(big['total'] - base['total']) / (big['nodes'] - base['nodes']) * 1e3:.2f}ms")


def noop_dag(out: Path, dag_dir: Path, n: int) -> Path:
    layer = dagmod.Layer("n", "noop", ("--out", str(out), "--name", "$(JOB)"),
                         tuple({"partition": str(i)} for i in range(n)), retries=0)
    return dagmod.write(dagmod.build(dagmod.Workflow("bench", 1, (layer,)), dag_dir), dag_dir)


def bench_local(n: int, work: Path) -> None:
    loop_out = work / "loop"
    t = time.perf_counter()
    for i in range(n):
        noop.main(["--out", str(loop_out), "--name", f"n-{i:03d}"])
    t_loop = time.perf_counter() - t
    print(f"local: {n} noop nodes; plain loop of noop.main(): {t_loop * 1e3:.1f}ms "
          f"({t_loop / n * 1e3:.2f}ms/node)")
    t_seq = 0.0
    for cpus in (1, os.cpu_count() or 1):
        out = work / f"exec{cpus}"
        dag_file = noop_dag(out, work / f"dag-local{cpus}", n)
        outcome, t_exec = timed(local.run_dag, dag_file, max_cpus=cpus, progress=False)
        t_seq = t_exec if cpus == 1 else t_seq
        assert outcome.status == "done", outcome
        same = sorted(p.read_text() for p in out.glob("*.txt")) == sorted(p.read_text() for p in loop_out.glob("*.txt"))
        print(f"  executor, {cpus} CPU(s): {t_exec:.2f}s = {t_exec / n * 1e3:.1f}ms/node; overhead "
              f"{(t_exec - t_loop) / n * 1e3:.1f}ms/node ({t_exec / t_loop:.0f}x the loop); outputs identical: {same}")
    probe, k = work / "probe", 10
    t = time.perf_counter()
    for _ in range(k):
        subprocess.run([sys.executable, "-m", "smartcache.tasks.noop", "--out", str(probe), "--name", "x"], check=True)
    t_task = (time.perf_counter() - t) / k
    print(f"  a node's own process (python -m smartcache.tasks.noop, mean of {k}): {t_task * 1e3:.1f}ms; "
          f"executor bookkeeping at 1 CPU: {(t_seq / n - t_task) * 1e3:.1f}ms/node")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--months", type=int, default=6)
    p.add_argument("--nodes", type=int, default=40)
    p.add_argument("--no-condor", action="store_true")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="smartcache-bench-dag-", dir="/tmp"))
    work.chmod(0o755)      # the pool's job user must be able to enter DAG dirs
    try:
        bench_local(a.nodes, work)
        if not a.no_condor:
            bench_condor(a.months, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
