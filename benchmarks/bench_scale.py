"""The seed's scale: a 10 GB-class Avro set reduced as a DAG on the local executor and on the project's
real HTCondor pool, measured at 1 and 2 slots and projected beyond (stated as a projection).

    python benchmarks/bench_scale.py --raw /tmp/scale/raw --generate --months 3 --end 2026-09 --scale 50
    python benchmarks/bench_scale.py --raw /tmp/scale/raw --big-day-scale 200   # + one 40 GB-class node
    python benchmarks/bench_scale.py --from-json condor.json local.json --plot scale.png   # re-print, merged
    python benchmarks/bench_scale.py --small                                     # the machinery, ~1 min

Each run is the product's own path: a catalog run row, the reduce layer of ``smartcache submit reduce``
(one node per day, every part file of the day in it, throttled to N slots by the DAG's ``reduce``
category), launched by ``submit.runs.launch`` on the local executor or as a DAGMan job on the pool.
Every node prints its own cost line (``tasks/reduce/nodestats.py``: records, bytes in/out, CPU, peak
RSS, when its process started, entered main and ended); from those and the run's makespan:

- node cost: process wall (interpreter start-up and imports included) and its compute part;
- overhead per node: slot time not spent inside a node process, (makespan x slots - sum of node
  process walls) / nodes -- DAGMan's submit/match/start/stop cycle, or the executor's;
- projection to S slots: longest-processing-time scheduling of the measured (node cost + overhead)
  onto S slots, plus the run's fixed start-up and tail; checked against the 2-slot measurement.
  It assumes each slot is a core like these, I/O not limiting (bytes per second per slot are
  printed) and DAGMan's serial submission not limiting (it submits far faster than nodes finish here);
- 10 GB and 40 GB: more days of the measured daily volume (more nodes, each like a measured one);
  with ``--big-day-scale`` one day of 4x the volume is generated and reduced for real (its wall and
  peak memory measured, not projected), for sets that grow by day size instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
TARGET_S, TARGET_RSS_MB = 30 * 60, 1024
PROJECT_SLOTS = (1, 2, 4, 8, 16, 32, 64, 128)


# -- runs ------------------------------------------------------------------------------------------
def reduce_run(raw: Path, work: Path, executor: str, slots: int) -> dict:
    """Reduce every day under ``raw`` as one DAG run; returns the makespan and every node's stats."""
    from smartcache.catalog import load_config
    from smartcache.condor.dag import Workflow
    from smartcache.submit import runs
    from smartcache.submit import workflows as W
    from smartcache.tasks.reduce import nodestats

    home = work / f"{executor}-{slots}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    home.chmod(0o755)
    cfg = load_config(env={"SMARTCACHE_HOME": str(home / "home"), "SMARTCACHE_DATA": str(home / "data")})
    parts = W.list_partitions(str(raw))
    months = (parts[-1].day.year - parts[0].day.year) * 12 + parts[-1].day.month - parts[0].day.month + 1
    full = W.reduce(cfg, months=months, source=str(raw))
    plan = W.Plan("reduce", {**full.params, "slots": slots, "bench": "scale"},
                  lambda rid: Workflow("reduce", rid, (full.make(rid).layers[0],), max_jobs={"reduce": slots}))
    store = runs.open_catalog(cfg)
    run, dag_file = runs.create(cfg, store, plan, executor)
    t0 = time.time()
    run = runs.launch(cfg, store, run, executor=executor, wait=True, progress=False)
    t_end = time.time()
    out = dag_file.parent / (dag_file.name + ".dagman.out")
    if executor == "condor" and out.exists():
        t_end = out.stat().st_mtime                 # DAGMan's last word, not our poll
    nodes = []
    for err in sorted((dag_file.parent / "logs").glob("*.err")):
        st = nodestats.parse(err.read_text(errors="replace"))
        if st:
            nodes.append({"node": err.stem, **st})
    data = sum(p.stat().st_size for p in (home / "data").rglob("*.parquet"))
    store.close()
    return {"executor": executor, "slots": slots, "status": run.status, "makespan": t_end - t0, "t0": t0,
            "t_end": t_end, "nodes": nodes, "n_nodes": len(parts), "reduced_bytes": data}


def summarize(r: dict) -> dict:
    nodes = r["nodes"]
    walls = [n["end"] - n["process_start"] for n in nodes]
    compute = [n["end"] - n["main_start"] for n in nodes]
    n = max(len(nodes), 1)
    first = min(n["process_start"] for n in nodes)
    last = max(n["end"] for n in nodes)
    return {
        "records": sum(x["records"] for x in nodes), "bytes_in": sum(x["bytes_in"] for x in nodes),
        "bytes_out": sum(x["bytes_out"] for x in nodes), "cpu_s": sum(x["cpu_s"] for x in nodes),
        "node_wall_mean": sum(walls) / n, "node_wall_max": max(walls), "node_compute_mean": sum(compute) / n,
        "startup_mean": sum(w - c for w, c in zip(walls, compute)) / n,
        "peak_rss_mb": max(x["peak_rss_mb"] for x in nodes),
        # slot time between the first node's start and the last one's end not spent in a node process
        "overhead_per_node": ((last - first) * r["slots"] - sum(walls)) / n,
        "head": first - r["t0"], "tail": r["t_end"] - last, "complete": len(nodes) == r["n_nodes"],
    }


# -- projection ------------------------------------------------------------------------------------
def lpt(costs: list[float], slots: int) -> float:
    """Makespan of longest-processing-time-first list scheduling onto ``slots`` slots."""
    import heapq
    loads = [0.0] * slots
    for c in sorted(costs, reverse=True):
        heapq.heapreplace(loads, loads[0] + c)
    return max(loads)


def project(r: dict, s: dict, slots: int, n_nodes: int | None = None) -> float:
    """Makespan at ``slots`` slots of ``n_nodes`` day nodes like the measured ones (their costs
    taken in turn): a bigger set at the same daily volume is more days, i.e. more nodes."""
    nodes = r["nodes"]
    n_nodes = n_nodes or len(nodes)
    costs = [nodes[i % len(nodes)]["end"] - nodes[i % len(nodes)]["process_start"] + max(s["overhead_per_node"], 0.0)
             for i in range(n_nodes)]
    return s["head"] + s["tail"] + lpt(costs, slots)


# -- the 40 GB-class day ---------------------------------------------------------------------------
def big_day(work: Path, scale: float, day: str) -> dict:
    """Generate one day at ``scale`` and reduce it as one node process (measured, not projected)."""
    import subprocess

    from smartcache.tasks.generate.task import generate_logs
    from smartcache.tasks.reduce import nodestats
    raw = work / "big-day" / "raw"
    shutil.rmtree(raw.parent, ignore_errors=True)
    t = time.perf_counter()
    gen = generate_logs(raw, start=day, days=1, scale=scale, seed=16, workers=1)
    gen_s = time.perf_counter() - t
    srcs = [str(p) for p in gen.partitions]
    proc = subprocess.run([sys.executable, "-m", "smartcache.tasks.reduce", "--no-catalog", "--no-progress",
                           "--out", str(raw.parent / "out"), *srcs], capture_output=True, text=True)
    st = nodestats.parse(proc.stderr)
    shutil.rmtree(raw.parent, ignore_errors=True)
    if proc.returncode != 0 or st is None:
        raise SystemExit(f"big-day reduce failed:\n{proc.stderr[-2000:]}")
    return {"scale": scale, "records": gen.records, "parts": len(srcs), "generate_s": gen_s, **st,
            "wall": st["end"] - st["process_start"]}


# -- report ----------------------------------------------------------------------------------------
def report(res: dict, plot: Path | None) -> None:
    gen = res.get("generate")
    runs_ = [r for r in res["runs"] if r["nodes"]]
    base = next((r for r in runs_ if r["executor"] == "condor" and r["slots"] == 1), runs_[0])
    sb = summarize(base)
    gib = sb["bytes_in"] / 2**30
    print(f"data: {res['raw']}: {base['n_nodes']} days, {sb['records']:,} records, {gib:.2f} GiB Avro in "
          f"(reduced Parquet out {sb['bytes_out'] / 2**20:.0f} MiB); load at start {res['load'][0]:.1f}, "
          f"end {res['load'][1]:.1f}" + (f"; generated in {gen['elapsed']:.0f} s, workers' peak RSS "
                                        f"{gen['peak_rss_mb']:.0f} MB" if gen else ""))
    print(f"{'executor':<9}{'slots':>6}{'wall s':>9}{'rec/s':>11}{'node s':>8}{'(start-up)':>11}{'max node s':>11}"
          f"{'CPU s':>8}{'ovh/node s':>11}{'head+tail s':>12}{'peak RSS MB':>12}{'MB/s in':>9}")
    for r in runs_:
        s = summarize(r)
        print(f"{r['executor']:<9}{r['slots']:>6}{r['makespan']:>9.1f}{s['records'] / r['makespan']:>11,.0f}"
              f"{s['node_wall_mean']:>8.2f}{s['startup_mean']:>11.2f}{s['node_wall_max']:>11.2f}{s['cpu_s']:>8.0f}"
              f"{s['overhead_per_node']:>11.2f}{s['head'] + s['tail']:>12.1f}{s['peak_rss_mb']:>12.0f}"
              f"{s['bytes_in'] / 2**20 / r['makespan']:>9.1f}" + ("" if s["complete"] and r["status"] == "done"
                                                                  else f"  [{r['status']}, incomplete]")
              + (f"  load {r['load'][0]:.0f}-{r['load'][1]:.0f}" if r.get("load") else ""))
    per_node_in = sb["bytes_in"] / base["n_nodes"] / 2**20
    print(f"per partition (day): {sb['records'] / base['n_nodes']:,.0f} records, {per_node_in:.0f} MiB in, "
          f"{sb['node_wall_mean']:.2f} s per node process ({sb['startup_mean']:.2f} s of it start-up and imports), "
          f"{sb['cpu_s'] / sb['records'] * 1e6:.2f} us CPU per record")
    two = next((r for r in runs_ if r["executor"] == base["executor"] and r["slots"] == 2), None)
    if two:
        p2 = project(base, sb, 2)
        print(f"check: projected {base['executor']} 2 slots {p2:.0f} s vs measured {two['makespan']:.0f} s "
              f"({(p2 / two['makespan'] - 1) * 100:+.0f} %; both cores of this shared machine run nodes then)")
    per_node = sb["bytes_in"] / base["n_nodes"]
    sizes = {f"measured {gib:.1f} GiB": base["n_nodes"], "10 GB": round(10e9 / per_node),
             "40 GB": round(40e9 / per_node)}
    print(f"PROJECTION from the {base['executor']} 1-slot run, makespan (min) at S slots: LPT of the measured "
          f"node costs + {sb['overhead_per_node']:.1f} s overhead each, + {sb['head'] + sb['tail']:.0f} s head "
          f"and tail; bigger sets = more days of the same volume ({per_node / 2**20:.0f} MiB a node):")
    print(f"  {'slots':>20}" + "".join(f"{s:>8}" for s in PROJECT_SLOTS))
    curves = {}
    for label, n in sizes.items():
        curves[f"{label} ({n} nodes)"] = ys = [project(base, sb, s, n) for s in PROJECT_SLOTS]
        print(f"  {label + f' ({n} nodes)':>20}" + "".join(f"{v / 60:>8.1f}" for v in ys))
    k40 = sizes["40 GB"] / base["n_nodes"]
    t64 = curves[f"40 GB ({sizes['40 GB']} nodes)"][PROJECT_SLOTS.index(64)]
    print(f"  40 GB: {sb['cpu_s'] * k40 / 3600:.2f} core-hours of node CPU; at 64 slots the pool reads "
          f"{sb['bytes_in'] * k40 / t64 / 2**20:.0f} MiB/s of Avro")
    big = res.get("big_day")
    if big:
        print(f"40 GB-class node, measured: one day at scale {big['scale']} ({big['records']:,} records, "
              f"{big['bytes_in'] / 2**20:.0f} MiB in {big['parts']} parts): {big['wall']:.1f} s, "
              f"CPU {big['cpu_s']:.1f} s, peak RSS {big['peak_rss_mb']:.0f} MB (target <= {TARGET_RSS_MB})")
    worst = max(summarize(r)["peak_rss_mb"] for r in runs_)
    two_any = [r["makespan"] for r in runs_ if r["slots"] == 2]
    ten = curves[f"10 GB ({sizes['10 GB']} nodes)"][PROJECT_SLOTS.index(2)]
    print(f"targets: {gib:.1f} GiB on 2 cores measured {min(two_any) / 60 if two_any else float('nan'):.1f} min; "
          f"10 GB on 2 cores projected {ten / 60:.1f} min (< {TARGET_S // 60}); peak memory per node "
          f"{worst:.0f} MB measured (<= {TARGET_RSS_MB})")
    if plot:
        _plot(res, runs_, curves, plot)
        print(f"plot: {plot}")


def _plot(res: dict, runs_: list[dict], curves: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (label, ys), style in zip(curves.items(), (":", "-", "--")):
        ax.plot(PROJECT_SLOTS, [y / 60 for y in ys], style, color="grey", label=f"{label}, projected")
    big = res.get("big_day")
    if big:
        ax.text(0.02, 0.03, f"40 GB-class day measured: {big['wall']:.0f} s, {big['peak_rss_mb']:.0f} MB peak",
                transform=ax.transAxes, fontsize=8)
    for ex, marker in (("condor", "o"), ("local", "s")):
        pts = [(r["slots"], r["makespan"] / 60) for r in runs_ if r["executor"] == ex]
        if pts:
            ax.plot(*zip(*pts), marker, ms=8, label=f"{ex}, measured")
    ax.axhline(TARGET_S / 60, color="red", lw=0.8, ls=":", label="30 min")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("pool slots (cores)")
    ax.set_ylabel("reduce wall time (min)")
    ax.set_title("Reduce DAG wall time vs slots (measured at 1-2, projected beyond)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def merge(results: list[dict]) -> dict:
    """Several saved results of the same data (e.g. one per executor) as one."""
    out = {"raw": results[0]["raw"], "runs": [r for res in results for r in res["runs"]],
           "load": [min(x["load"][0] for x in results), max(x["load"][-1] for x in results)]}
    for key in ("generate", "big_day"):
        found = [res[key] for res in results if res.get(key)]
        if found:
            out[key] = found[-1]
    return out


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, help="raw partitions (year=/month=/day=/part-*)")
    ap.add_argument("--work", type=Path, help="run dirs, catalogs and outputs (default: a dir under /tmp)")
    ap.add_argument("--generate", action="store_true", help="generate --raw first")
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--end", default="2026-09")
    ap.add_argument("--scale", type=float, default=50.0)
    ap.add_argument("--executors", default="local,condor")
    ap.add_argument("--slots", default="1,2")
    ap.add_argument("--big-day-scale", type=float, help="also generate and reduce one day at this scale")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    ap.add_argument("--from-json", type=Path, nargs="+", help="only print and plot saved results (merged)")
    ap.add_argument("--plot", type=Path, default=Path("scale.png"))
    ap.add_argument("--small", action="store_true", help="4 days at scale 1 under /tmp: checks the machinery")
    a = ap.parse_args(argv)
    if a.from_json:
        report(merge([json.loads(p.read_text()) for p in a.from_json]), a.plot)
        return 0
    work = a.work or Path(f"/tmp/smartcache-bench-scale-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)                        # the pool's job user enters run dirs (o+x on every parent)
    if a.small:
        a.raw, a.generate, a.months, a.scale, a.end = work / "raw", True, 1, 1.0, "2026-02"
    if a.raw is None:
        ap.error("--raw is required")
    res: dict = {"raw": str(a.raw), "load": [os.getloadavg()[0]], "runs": []}
    if a.generate:
        from smartcache.tasks.generate.task import generate_logs
        t = time.perf_counter()
        kw = {"days": 4, "start": "2026-02-01"} if a.small else {"end": a.end}
        gen = generate_logs(a.raw, months=a.months, scale=a.scale, seed=16, progress=True, workers=2, **kw)
        res["generate"] = {"elapsed": time.perf_counter() - t, "records": gen.records,
                           "bytes": sum(r["bytes"] for r in gen.per_partition),
                           "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    executors = [e for e in a.executors.split(",") if e]
    if "condor" in executors:
        from smartcache.condor import pool
        reason = pool.cannot_run_reason()
        if reason:
            print(f"condor skipped: {reason}", file=sys.stderr)
            executors.remove("condor")
        else:       # binds this checkout, its Python and the data into a running pool (never restarts it)
            pool.pool_up(binds=[work, a.raw.absolute()], quiet=True)
            pool.activate_pool_env()
    for ex in executors:
        for slots in (int(s) for s in a.slots.split(",")):
            load0 = os.getloadavg()[0]
            print(f"{ex}, {slots} slot(s): running (load {load0:.1f})", file=sys.stderr)
            res["runs"].append({**reduce_run(a.raw.absolute(), work, ex, slots),
                                "load": [load0, os.getloadavg()[0]]})
    if a.big_day_scale:
        res["big_day"] = big_day(work, a.big_day_scale, "2026-09-15")
    res["load"].append(os.getloadavg()[0])
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    report(res, a.plot)
    if a.small or not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
