"""Benchmark the inference service against a naive Flask + ``model.predict`` baseline.

Both servers run under gunicorn on 127.0.0.1 with the same worker count; load comes from
a separate process (benchmarks/loadgen.py, keep-alive connections). Measured in one run:

* single-row ``POST /json``: latency p50/p99 at concurrency 1, throughput at concurrency 32;
* ``GET /decide`` for a listed file (list lookup) and an unlisted one (model on LFN features).

Model: the 16 -> 64 -> 32 -> 1 MLP of ANCHORS.md, trained for a few steps. Targets on
2 cores: p50 <= 1 ms, p99 <= 5 ms, >= 3,000 req/s. Every request count and duration is
bounded. Usage: ``python benchmarks/bench_inference.py [--quick] [--workers 2] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_FEATURES = 16
FEATURES = ["is_mc", "tier_MINIAODSIM", "log_size"] + [f"f{i}" for i in range(N_FEATURES - 3)]
SITE = "T2_IT_Pisa"
LISTED = "/store/mc/Campaign/Primary/MINIAODSIM/proc-v1/00000/file000042.root"
UNLISTED = "/store/mc/Campaign/Primary/MINIAODSIM/proc-v1/00000/other.root"
TARGETS = {"p50_ms": 1.0, "p99_ms": 5.0, "rps": 3000.0}

BUILD = r"""
import sys, numpy as np, keras
from pathlib import Path
from smartcache.inference import modelformat as mf
out = Path(sys.argv[1]); keras.utils.set_random_seed(1)
x = np.random.default_rng(1).normal(size=(2048, %d)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
norm = keras.layers.Normalization(); norm.adapt(x)
inp = keras.Input((%d,), name="features"); h = norm(inp)
h = keras.layers.Dense(64, activation="relu")(h); h = keras.layers.Dense(32, activation="relu")(h)
m = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h)); m.compile("adam", "binary_crossentropy")
m.fit(x, y, epochs=2, verbose=0)
m.save(out / "model.keras")
for k, v in mf.export_keras(m, "mlp", out / "export").items():
    (out / f"mlp.{k}").write_bytes(v)
""" % (N_FEATURES, N_FEATURES)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server on {port} did not become healthy")


def setup(work: Path) -> Path:
    """Train and export the model; a catalog with it, a site and a 100k-file placement list."""
    log("training and exporting the 16-64-32-1 MLP (TensorFlow, in a child process)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", BUILD, str(work)], check=True, env=env, timeout=900)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from smartcache.catalog import open_store
    from smartcache.inference import modelformat as mf
    home = work / "home"
    home.mkdir()
    store = open_store(f"sqlite:///{home / 'catalog.db'}", migrate=True)
    arts = {k: (work / f"mlp.{k}").read_bytes() for k in ("tflite", "savedmodel", "params")}
    model = mf.register(store, "mlp", arts, input_features=FEATURES, stage="production",
                        feature_defaults={f: 0.0 for f in FEATURES[3:]})
    store.add_site(SITE, 10**15)
    lfns = [LISTED.replace("042", f"{i:06d}") for i in range(100_000)] + [LISTED]
    pq.write_table(pa.table({"lfn": lfns, "score": [0.9] * len(lfns)}), work / "list.parquet")
    store.add_placement(SITE, str(work / "list.parquet"), len(lfns), 0, model=(model.name, model.version))
    store.close()
    return home


def start_ours(home: Path, port: int, workers: int, threads: int, logf) -> subprocess.Popen:
    from smartcache.submit.cli.group import cli
    if "serve" in cli.commands:
        cmd = [sys.executable, "-m", "smartcache.submit.cli.group"]
    else:
        cmd = [sys.executable, "-c", "from smartcache.submit.cli.group import cli; from smartcache.submit.cli.serve "
                                     "import serve; cli.add_command(serve); cli()"]
    cmd += ["serve", "--port", str(port), "--workers", str(workers), "--threads", str(threads)]
    env = {**os.environ, "SMARTCACHE_HOME": str(home)}
    env.pop("SMARTCACHE_TOKEN", None)
    env.pop("SMARTCACHE_CATALOG_URL", None)
    return subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def start_naive(model: Path, port: int, workers: int, threads: int, logf) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-b", f"127.0.0.1:{port}", "-w", str(workers),
           "-k", "gthread", "--threads", str(threads), "--no-control-socket", "--timeout", "120", "naive_app:app"]
    env = {**os.environ, "NAIVE_MODEL": str(model), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def load(port: int, path: str, method: str, body: bytes, concurrency: int, requests: int,
         max_seconds: float, work: Path) -> dict:
    body_file = work / f"body-{abs(hash((path, body)))}.json"
    body_file.write_bytes(body)
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--port", str(port), "--path", path, "--method", method,
           "--concurrency", str(concurrency), "--requests", str(requests), "--max-seconds", str(max_seconds),
           "--warmup", "20"]
    if body:
        cmd += ["--body", str(body_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=max_seconds * 3 + 60, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (gunicorn master + workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def scenarios(quick: bool) -> dict[str, tuple[int, int, float]]:
    """name -> (concurrency, requests, max seconds)."""
    f = 0.25 if quick else 1.0
    return {"c1": (1, int(4000 * f), 30.0), "c32": (32, int(30000 * f), 30.0),
            "naive_c1": (1, int(120 * f) or 20, 30.0), "naive_c32": (32, int(600 * f), 30.0)}


def in_process(work: Path, quick: bool) -> dict:
    """The serving path without HTTP: one row through the predictor, a 100k-row batch."""
    import numpy as np

    from smartcache.inference.runtime import Predictor, runtime_name
    pred = Predictor((work / "mlp.tflite").read_bytes())
    one = np.full((1, N_FEATURES), 0.5, np.float32)
    n = 5000 if quick else 20000
    for _ in range(200):
        pred.predict(one)
    t0 = time.perf_counter()
    for _ in range(n):
        pred.predict(one)
    row_us = (time.perf_counter() - t0) / n * 1e6
    big = np.random.default_rng(0).normal(size=(100_000, N_FEATURES)).astype(np.float32)
    pred.predict(big)
    t0 = time.perf_counter()
    pred.predict(big)
    return {"runtime": runtime_name(), "row_us": round(row_us, 2),
            "batch_rows_per_s": round(100_000 / (time.perf_counter() - t0))}


def run(args: argparse.Namespace, work: Path) -> dict:
    home = setup(work)
    sc = scenarios(args.quick)
    row = json.dumps({"keys": FEATURES, "values": [0.5] * N_FEATURES, "model": "mlp"}).encode()
    results: dict = {"loadavg_start": os.getloadavg()[0], "workers": args.workers, "threads": args.threads}
    results["in_process"] = in_process(work, args.quick)
    procs = []
    with open(work / "ours.log", "w") as lo, open(work / "naive.log", "w") as ln:
        try:
            p_ours, p_naive = free_port(), free_port()
            procs.append(start_ours(home, p_ours, args.workers, args.threads, lo))
            wait_healthy(p_ours, procs[-1])
            for name, (path, method, body) in {
                    "json": ("/json", "POST", row),
                    "decide_list": (f"/decide?site={SITE}&lfn={LISTED}", "GET", b""),
                    "decide_model": (f"/decide?site={SITE}&lfn={UNLISTED}&size=2000000000", "GET", b"")}.items():
                for c in ("c1", "c32"):
                    conc, n, secs = sc[c]
                    log(f"ours {name} concurrency {conc}: {n} requests")
                    cpu0 = tree_cpu_seconds(procs[-1].pid)
                    res = load(p_ours, path, method, body, conc, n, secs, work)
                    # warm-up requests are included in the server's CPU time: a slight overestimate
                    res["server_cpu_us_per_request"] = round(
                        (tree_cpu_seconds(procs[-1].pid) - cpu0) / max(res["requests"], 1) * 1e6, 1)
                    results[f"ours_{name}_{c}"] = res
            procs[-1].terminate()
            procs[-1].wait(30)
            log("naive baseline: Flask + model.predict per request")
            procs.append(start_naive(work / "model.keras", p_naive, args.workers, args.threads, ln))
            wait_healthy(p_naive, procs[-1], timeout=300)
            for c in ("naive_c1", "naive_c32"):
                conc, n, secs = sc[c]
                log(f"naive json concurrency {conc}: {n} requests")
                results[c] = load(p_naive, "/json", "POST", row, conc, n, secs, work)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        p.kill()
    results["loadavg_end"] = os.getloadavg()[0]
    return results


def report(r: dict) -> None:
    def line(label: str, c1: dict, c32: dict) -> str:
        return (f"{label:<26} p50 {c1['p50_ms']:>8.3f} ms  p99 {c1['p99_ms']:>8.3f} ms  "
                f"c32 {c32['rps']:>8.1f} req/s (p50 {c32['p50_ms']:.2f} ms, p99 {c32['p99_ms']:.2f} ms)  "
                f"errors {c1['errors'] + c32['errors']}, non-200 {_non200(c1) + _non200(c32)}")
    print(f"machine: {os.cpu_count()} cores, load average {r['loadavg_start']:.2f} at start, "
          f"{r['loadavg_end']:.2f} at end; {r['workers']} gunicorn workers x {r['threads']} threads each")
    ip = r["in_process"]
    print(f"in-process ({ip['runtime']}): one row {ip['row_us']} us, 100k-row batch "
          f"{ip['batch_rows_per_s'] / 1e6:.1f} M rows/s")
    print(line("smartcache /json", r["ours_json_c1"], r["ours_json_c32"]))
    print(line("naive Flask+predict /json", r["naive_c1"], r["naive_c32"]))
    print(line("smartcache /decide (list)", r["ours_decide_list_c1"], r["ours_decide_list_c32"]))
    print(line("smartcache /decide (model)", r["ours_decide_model_c1"], r["ours_decide_model_c32"]))
    o1, n1, o32, n32 = r["ours_json_c1"], r["naive_c1"], r["ours_json_c32"], r["naive_c32"]
    srv, cli = o32["server_cpu_us_per_request"], o32["client_cpu_us_per_request"]
    print(f"/json at c32: server CPU {srv} us/request, load generator {cli} us/request -> the 2 cores "
          f"could carry ~{2e6 / (srv + cli):.0f} req/s with client and server alone on them, "
          f"~{2e6 / srv:.0f} req/s with the load generator elsewhere")
    print(f"ratio naive/ours: p50 x{n1['p50_ms'] / o1['p50_ms']:.0f}, p99 x{n1['p99_ms'] / o1['p99_ms']:.0f}; "
          f"throughput ours/naive x{o32['rps'] / max(n32['rps'], 1e-9):.0f}")
    for key, target in TARGETS.items():
        got = o32[key] if key == "rps" else o1[key]
        ok = got >= target if key == "rps" else got <= target
        print(f"target /json {key} {'>=' if key == 'rps' else '<='} {target}: measured {got} -> "
              f"{'met' if ok else 'NOT met'}")
    print("reference: TFaaS published 400-480 req/s on 16-24 cores (ANCHORS.md)")


def _non200(res: dict) -> int:
    return sum(v for k, v in res["status"].items() if k != "200")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the requests")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (models, logs)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="smartcache-bench-"))
    try:
        results = run(args, work)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
