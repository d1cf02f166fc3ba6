"""Benchmark the inference service against Flask + Keras baselines.

Every server runs under gunicorn on 127.0.0.1 with the same worker and thread count; load
comes from a separate process (benchmarks/loadgen.py, keep-alive connections). Measured in
one run, at 1, 16 and 32 concurrent connections (latency p50/p99 and throughput):

* single-row ``POST /json`` on smartcache, on the fair baseline (the same Flask app calling the
  Keras model through one ``tf.function`` per request: the strongest way to run the model itself)
  and on the naive one (``model.predict`` per request);
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
    import secrets

    import pyarrow as pa
    import pyarrow.parquet as pq

    from smartcache.catalog import open_store
    from smartcache.inference import modelformat as mf
    home = work / "home"
    home.mkdir(mode=0o700)
    # serve refuses to start without a usable token (the benchmark sends only reads)
    (home / "config.toml").write_text(f'[inference]\ntoken = "{secrets.token_urlsafe(32)}"\n')
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


def start_naive(model: Path, port: int, workers: int, threads: int, logf, mode: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-b", f"127.0.0.1:{port}", "-w", str(workers),
           "-k", "gthread", "--threads", str(threads), "--no-control-socket", "--timeout", "120", "naive_app:app"]
    env = {**os.environ, "NAIVE_MODEL": str(model), "NAIVE_MODE": mode, "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": ""}
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


CONCURRENCY = (1, 16, 32)
# requests per run at concurrency 1, 16, 32 (each run also stops after MAX_SECONDS)
REQUESTS = {"ours": (4000, 20000, 30000), "function": (2000, 6000, 8000), "predict": (120, 400, 600)}
MAX_SECONDS = 30.0
BASELINES = {"function": "fair Flask+tf.function", "predict": "naive Flask+predict"}


def scenarios(server: str, quick: bool) -> list[tuple[int, int]]:
    """(concurrency, requests) for one server."""
    f = 0.25 if quick else 1.0
    return [(c, max(int(n * f), 20)) for c, n in zip(CONCURRENCY, REQUESTS[server])]


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


def measure(port: int, proc: subprocess.Popen, key: str, path: str, method: str, body: bytes,
            plan: list[tuple[int, int]], work: Path, results: dict) -> None:
    for conc, n in plan:
        log(f"{key} concurrency {conc}: {n} requests")
        cpu0 = tree_cpu_seconds(proc.pid)
        res = load(port, path, method, body, conc, n, MAX_SECONDS, work)
        # warm-up requests are included in the server's CPU time: a slight overestimate
        res["server_cpu_us_per_request"] = round(
            (tree_cpu_seconds(proc.pid) - cpu0) / max(res["requests"], 1) * 1e6, 1)
        results[f"{key}_c{conc}"] = res


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(args: argparse.Namespace, work: Path) -> dict:
    home = setup(work)
    row = json.dumps({"keys": FEATURES, "values": [0.5] * N_FEATURES, "model": "mlp"}).encode()
    results: dict = {"loadavg_start": os.getloadavg()[0], "workers": args.workers, "threads": args.threads}
    results["in_process"] = in_process(work, args.quick)
    with open(work / "ours.log", "w") as logf:
        port = free_port()
        proc = start_ours(home, port, args.workers, args.threads, logf)
        try:
            wait_healthy(port, proc)
            for name, (path, method, body) in {
                    "json": ("/json", "POST", row),
                    "decide_list": (f"/decide?site={SITE}&lfn={LISTED}", "GET", b""),
                    "decide_model": (f"/decide?site={SITE}&lfn={UNLISTED}&size=2000000000", "GET", b"")}.items():
                measure(port, proc, f"ours_{name}", path, method, body, scenarios("ours", args.quick), work, results)
        finally:
            stop(proc)
    for mode, label in BASELINES.items():
        if args.skip_baselines:
            break
        log(f"baseline: {label} per request")
        with open(work / f"{mode}.log", "w") as logf:
            port = free_port()
            proc = start_naive(work / "model.keras", port, args.workers, args.threads, logf, mode)
            try:
                wait_healthy(port, proc, timeout=300)
                measure(port, proc, mode, "/json", "POST", row, scenarios(mode, args.quick), work, results)
            finally:
                stop(proc)
    results["loadavg_end"] = os.getloadavg()[0]
    return results


def report(r: dict) -> None:
    def line(label: str, key: str) -> str:
        cells = []
        for c in CONCURRENCY:
            res = r[f"{key}_c{c}"]
            cells.append(f"c{c:<2} p50 {res['p50_ms']:>8.2f} p99 {res['p99_ms']:>8.2f} ms {res['rps']:>7.0f}/s")
        errors = sum(r[f"{key}_c{c}"]["errors"] + _non200(r[f"{key}_c{c}"]) for c in CONCURRENCY)
        return f"{label:<31}" + " | ".join(cells) + f" | errors+non-200 {errors}"
    print(f"machine: {os.cpu_count()} cores, load average {r['loadavg_start']:.2f} at start, "
          f"{r['loadavg_end']:.2f} at end; {r['workers']} gunicorn workers x {r['threads']} threads each")
    ip = r["in_process"]
    print(f"in-process ({ip['runtime']}): one row {ip['row_us']} us, 100k-row batch "
          f"{ip['batch_rows_per_s'] / 1e6:.1f} M rows/s")
    print(line("smartcache /json", "ours_json"))
    baselines = {m: label for m, label in BASELINES.items() if f"{m}_c1" in r}
    for mode, label in baselines.items():
        print(line(f"{label} /json", mode))
    print(line("smartcache /decide (list)", "ours_decide_list"))
    print(line("smartcache /decide (model)", "ours_decide_model"))
    o32 = r["ours_json_c32"]
    srv, cli = o32["server_cpu_us_per_request"], o32["client_cpu_us_per_request"]
    print(f"/json at c32: server CPU {srv} us/request, load generator {cli} us/request -> the 2 cores "
          f"could carry ~{2e6 / (srv + cli):.0f} req/s with client and server alone on them")
    for mode, label in baselines.items():
        ratios = ", ".join(f"c{c} p50 x{r[f'{mode}_c{c}']['p50_ms'] / r[f'ours_json_c{c}']['p50_ms']:.1f} "
                           f"throughput x{r[f'ours_json_c{c}']['rps'] / max(r[f'{mode}_c{c}']['rps'], 1e-9):.1f}"
                           for c in CONCURRENCY)
        print(f"smartcache /json vs {label}: {ratios}")
    o1 = r["ours_json_c1"]
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
    ap.add_argument("--skip-baselines", action="store_true",
                    help="measure smartcache only (to compare two versions of it, run after run)")
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
