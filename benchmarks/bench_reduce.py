"""Reduction throughput: smartcache's reduce (JSON-lines and Avro) vs PySpark local[N] on the same JSON.

Generates the logs once (both formats, same seed, so the same records), then runs each contender in
its own process so that peak memory is its own:

- ours/json, ours/avro: ``reduce_partitions`` over every daily partition (no catalog), on one
  process and split over as many processes as Spark has cores (as DAG nodes would be);
- ours/avro with the fastavro decoder (``SMARTCACHE_AVRO_DECODER=fastavro``): the Avro baseline,
  since Spark has no Avro reader here (spark-avro is a Maven artifact);
- spark/json: Spark's JSON reader with the projected schema, the same filters and the same
  (day, site, file) aggregation, written as zstd Parquet. Session start-up is timed apart; the first
  run is "cold" (JIT warm-up), then ``--spark-warm`` more runs, the best of which is "warm". The
  timed region ends when Spark's write returns: counting the output rows (to check that every
  contender wrote the same rows) is done after the clock stops.

Reported per contender: wall time, records/s, CPU seconds and records/s per core (records divided
by CPU seconds: for Spark the JVM's own CPU time from /proc, JIT and GC threads included), peak RSS,
and the output row count (which must agree: it is the same reduction). The headline ratios are
against Spark *warm* (its best) and cold, per core and in wall time.

    python benchmarks/bench_reduce.py --small            # 3 days at scale 0.2: a quick check
    python benchmarks/bench_reduce.py --days 14 --scale 1 --data /tmp/bench-logs
Needs ``pip install '.[bench]'`` (PySpark, and Java 17) for the Spark side; ``--no-spark`` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def generate(data: Path, days: int, scale: float, seed: int) -> dict:
    from smartcache.tasks.generate.task import generate_logs
    out = {}
    for fmt in ("json", "avro"):
        root = data / fmt
        stamp = root / "_bench.json"
        want = {"days": days, "scale": scale, "seed": seed}
        if stamp.exists() and json.loads(stamp.read_text()) == want:
            print(f"reusing {fmt} logs in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
            t = time.perf_counter()
            generate_logs(root, start="2026-04-01", days=days, fmt=fmt, scale=scale, seed=seed)
            stamp.write_text(json.dumps(want))
            print(f"generated {fmt} logs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        manifest = json.loads((root / "_manifest.json").read_text())
        out[fmt] = {"records": manifest["totals"]["records"],
                    "bytes": sum(p.stat().st_size for p in root.rglob("part-*"))}
    return out


# -- workers (each in its own process) -------------------------------------------------------------
def _reduce_share(sources: list[str], out: str) -> tuple[int, int, int]:
    from smartcache.tasks.reduce.task import reduce_partitions
    res = reduce_partitions(sources, Path(out), None, None)
    return res.records_read, res.records_kept, sum(p.n_rows for p in res.partitions)


def worker_ours(src: Path, out: Path, procs: int) -> dict:
    """Reduce every partition: in this process, or split over ``procs`` processes as DAG nodes would be."""
    from concurrent.futures import ProcessPoolExecutor

    import pyarrow as pa

    from smartcache.tasks.reduce.readers import list_partitions
    sources = list_partitions(src)
    self0, kids0, t0 = _cpu_self(), _cpu_children(), time.perf_counter()
    if procs <= 1:
        parts = [_reduce_share(sources, str(out))]
    else:
        with ProcessPoolExecutor(procs) as ex:
            parts = list(ex.map(_reduce_share, [sources[i::procs] for i in range(procs)], [str(out)] * procs))
    wall = time.perf_counter() - t0
    cpu = _cpu_self() - self0 + _cpu_children() - kids0
    rss = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {"records": sum(p[0] for p in parts), "kept": sum(p[1] for p in parts),
            "rows": sum(p[2] for p in parts), "wall": wall, "cpu": cpu, "peak_rss_mb": rss / 1024,
            "arrow_peak_mb": pa.default_memory_pool().max_memory() / 2**20, "procs": procs}


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_spark(src: Path, out: Path, cores: int, warm_runs: int) -> dict:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    t0 = time.perf_counter()
    spark = (SparkSession.builder.master(f"local[{cores}]").appName("bench-reduce")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "2g")
             .config("spark.sql.shuffle.partitions", str(max(cores * 2, 2))).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - t0
    jvm = spark.sparkContext._gateway.proc.pid
    schema = T.StructType([T.StructField(n, t) for n, t in [
        ("FileName", T.StringType()), ("InputCollection", T.StringType()), ("SiteName", T.StringType()),
        ("Type", T.StringType()), ("SuccessFlag", T.IntegerType()), ("JobExecExitCode", T.IntegerType()),
        ("FileSize", T.LongType()), ("JobId", T.StringType()), ("UserId", T.LongType()), ("TaskId", T.LongType()),
        ("WrapCPU", T.DoubleType()), ("WrapWC", T.DoubleType()), ("StartedRunningTimeStamp", T.LongType()),
        ("FinishedTimeStamp", T.LongType()), ("JobExecExitTimeStamp", T.LongType()), ("ProtocolUsed", T.StringType())]])

    def run(dest: str) -> None:
        df = spark.read.schema(schema).json(str(src))          # discovers year=/month=/day= partitions
        ok = F.coalesce(F.col("SuccessFlag") == 1, F.col("JobExecExitCode") == 0)
        df = df.where((F.lower("Type") == "analysis") & ok & (F.col("FileSize") > 0)
                      & (F.length("FileName") > 0) & (F.length("SiteName") > 0))
        ts = F.coalesce("StartedRunningTimeStamp", "FinishedTimeStamp", "JobExecExitTimeStamp")
        g = df.groupBy("year", "month", "day", "SiteName", "FileName").agg(
            F.max("InputCollection").alias("dataset"), F.max("FileSize").alias("size"),
            F.count(F.lit(1)).alias("n_access"), F.countDistinct("JobId").alias("n_jobs"),
            F.countDistinct("UserId").alias("n_users"), F.countDistinct("TaskId").alias("n_tasks"),
            F.sum(F.coalesce("WrapCPU", F.lit(0.0))).alias("cpu_s"),
            F.sum(F.coalesce("WrapWC", F.lit(0.0))).alias("wall_s"),
            F.min(ts).alias("first_ts"), F.max(ts).alias("last_ts"),
            F.avg((F.lower("ProtocolUsed") == "local").cast("double")).alias("local_frac"))
        g.write.mode("overwrite").option("compression", "zstd").partitionBy("year", "month", "day").parquet(dest)

    result: dict = {"startup": startup, "runs": []}
    for i in range(1 + warm_runs):
        dest = str(out / f"run{i}")
        c0, t0 = _proc_cpu(jvm), time.perf_counter()
        run(dest)
        wall, cpu = time.perf_counter() - t0, _proc_cpu(jvm) - c0
        result["runs"].append({"wall": wall, "cpu": cpu, "rows": spark.read.parquet(dest).count()})  # untimed
    result["cold"] = result["runs"][0]
    result["warm"] = min(result["runs"][1:], key=lambda r: r["cpu"])
    result["peak_rss_mb"] = _proc_hwm_mb(jvm)
    spark.stop()
    return result


def _sub(args: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, str(HERE), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"worker {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--small", action="store_true", help="3 days at scale 0.2")
    ap.add_argument("--data", type=Path, help="where to keep the generated logs (reused when they match)")
    ap.add_argument("--spark-cores", type=int, default=2)
    ap.add_argument("--spark-warm", type=int, default=2, help="warm Spark runs after the cold one (best is kept)")
    ap.add_argument("--no-spark", action="store_true")
    ap.add_argument("--procs", type=int, default=None,
                    help="processes for ours, one partition share each (default: as many as Spark's cores)")
    ap.add_argument("--worker", choices=["ours", "spark"], help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker == "ours":
        print(json.dumps(worker_ours(a.src, a.out, a.procs)))
        return 0
    if a.worker == "spark":
        print(json.dumps(worker_spark(a.src, a.out, a.spark_cores, a.spark_warm)))
        return 0
    if a.small:
        a.days, a.scale = 3, 0.2
    data = a.data or Path(tempfile.mkdtemp(prefix="bench-reduce-"))
    data.mkdir(parents=True, exist_ok=True)
    sizes = generate(data, a.days, a.scale, a.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-reduce-out-"))
    try:
        procs = a.procs or a.spark_cores
        res = {}
        for fmt in ("json", "avro"):
            res[fmt] = _sub(["--worker", "ours", "--src", str(data / fmt), "--out", str(work / fmt), "--procs", "1"])
            if procs > 1:
                res[f"{fmt} x{procs}"] = _sub(["--worker", "ours", "--src", str(data / fmt),
                                               "--out", str(work / f"{fmt}{procs}"), "--procs", str(procs)])
        res["avro fastavro"] = _sub(["--worker", "ours", "--src", str(data / "avro"), "--out", str(work / "fa"),
                                     "--procs", "1"], {"SMARTCACHE_AVRO_DECODER": "fastavro"})
        spark = None if a.no_spark else _sub(["--worker", "spark", "--src", str(data / "json"),
                                              "--out", str(work / "spark"), "--spark-cores", str(a.spark_cores),
                                              "--spark-warm", str(a.spark_warm)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if a.data is None:
            shutil.rmtree(data, ignore_errors=True)
    report(a, sizes, res, spark)
    return 0


def report(a, sizes: dict, ours: dict, spark: dict | None) -> None:
    n = sizes["json"]["records"]
    mib = {fmt: sizes[fmt]["bytes"] / 2**20 for fmt in sizes}
    print(f"reduction of {n:,} records ({a.days} days, scale {a.scale}); json.gz {mib['json']:.0f} MiB, "
          f"avro {mib['avro']:.0f} MiB; machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'contender':<24}{'wall s':>9}{'rec/s':>11}{'CPU s':>9}{'rec/s/core':>12}{'peak RSS MB':>13}{'rows':>10}")
    lines = []
    for key, r in ours.items():
        lines.append((f"ours {key}" + (" procs" if " x" in key else ""), r["wall"], r["cpu"], r["peak_rss_mb"],
                      r["rows"]))
    if spark:
        for label in ("cold", "warm"):
            s = spark[label]
            lines.append((f"spark local[{a.spark_cores}] {label}", s["wall"], s["cpu"], spark["peak_rss_mb"], s["rows"]))
    for name, wall, cpu, rss, rows in lines:
        print(f"{name:<24}{wall:>9.2f}{n / wall:>11,.0f}{cpu:>9.2f}{n / cpu:>12,.0f}{rss:>13.0f}{rows:>10,}")
    fa = ours["avro fastavro"]
    print(f"avro, column-wise decoder / fastavro decoder (the Avro baseline): per core "
          f"{fa['cpu'] / ours['avro']['cpu']:.2f}x, wall {fa['wall'] / ours['avro']['wall']:.2f}x")
    rows = {k: r["rows"] for k, r in ours.items()}
    if spark:
        print(f"spark session start-up: {spark['startup']:.1f} s (not in the figures above); "
              f"warm = best of {len(spark['runs']) - 1} runs after the cold one")
        w, c = spark["warm"], spark["cold"]

        def parallel(fmt: str) -> tuple[str, dict]:      # ours on as many processes as Spark has cores
            key = next((k for k in ours if k.startswith(f"{fmt} x")), fmt)
            return key, ours[key]
        jn, j = parallel("json")
        an, av = parallel("avro")
        print(f"per core, ours-json / spark-warm (strongest baseline): {w['cpu'] / ours['json']['cpu']:.2f}x;"
              f" / spark-cold: {c['cpu'] / ours['json']['cpu']:.2f}x")
        print(f"wall, ours-{jn} / spark-warm: {w['wall'] / j['wall']:.2f}x; / spark-cold: {c['wall'] / j['wall']:.2f}x;"
              f" / spark-cold incl. start-up: {(c['wall'] + spark['startup']) / j['wall']:.2f}x")
        print(f"ours-avro / spark-warm(json): per core {w['cpu'] / ours['avro']['cpu']:.2f}x,"
              f" wall (ours-{an}) {w['wall'] / av['wall']:.2f}x")
        rows |= {f"spark {i}": r["rows"] for i, r in enumerate(spark["runs"])}
    if len(set(rows.values())) != 1:
        print(f"WARNING: row counts differ: {rows}")


if __name__ == "__main__":
    sys.exit(main())
