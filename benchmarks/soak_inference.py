"""Soak the inference service: full read load while models are uploaded and deleted.

``smartcache serve`` (gunicorn, 2 workers) on 127.0.0.1 with the benchmark's model, site and
100k-file placement list (see bench_inference.py). For ``--seconds`` (default 300):

* ``POST /json`` and ``GET /decide`` at full load (two load-generator processes, keep-alive);
* every ``--period`` seconds (default 10): upload a SavedModel bundle (converted in the
  sandbox), predict with it, delete it, check it is gone -- each step on whichever worker;
* every 5 s: the resident memory of the gunicorn master and workers.

Prints the request counts, every failure, the upload cycles and the RSS series; exits 1 if
any request failed. Usage: ``python benchmarks/soak_inference.py [--seconds 300] [--period 10]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_inference as bench  # noqa: E402


def http(port: int, path: str, body: bytes | None = None, method: str | None = None,
         headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1]) * 1024


def tree_rss(pid: int) -> list[int]:
    """RSS bytes of the gunicorn master and of its workers (its children); the workers' own
    children -- the sandboxed converters, gone after each upload -- are not the service."""
    try:
        out = [_rss(pid)]
        kids = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except (OSError, StopIteration, ValueError):
        return []
    for kid in kids:
        try:
            out.append(_rss(kid))
        except (OSError, StopIteration, ValueError):
            continue
    return out


def upload_request(kind: str, model: bytes) -> tuple[bytes, dict]:
    """(body, headers) of an upload of ``model``: a SavedModel bundle, or TFLite as multipart."""
    if kind == "savedmodel":
        return model, {"Content-Encoding": "gzip"}
    boundary = "soak-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nchurn\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"; filename="m.tflite"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + model + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def churn(port: int, token: str, upload: tuple[bytes, dict], period: float, stop: threading.Event,
          log: list) -> None:
    """Upload, use, delete a model every ``period`` seconds; record every step's outcome."""
    auth = {"Authorization": f"Bearer {token}"}
    row = json.dumps({"values": [0.5] * bench.N_FEATURES, "model": "churn"}).encode()
    while not stop.is_set():
        t0 = time.monotonic()
        steps = {}
        status, body = http(port, "/upload", upload[0], headers={**auth, **upload[1]})
        steps["upload"] = status
        if status == 200:
            steps["max_abs_diff"] = json.loads(body)["conversion"]["max_abs_diff"]
        steps["upload_s"] = round(time.monotonic() - t0, 2)
        steps["predict"] = http(port, "/json", row)[0]
        steps["delete"] = http(port, "/delete/churn", method="DELETE", headers=auth)[0]
        steps["after_delete"] = http(port, "/json", row)[0]
        log.append(steps)
        stop.wait(max(0.0, period - (time.monotonic() - t0)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--period", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=16, help="connections per route")
    ap.add_argument("--upload", choices=("savedmodel", "tflite"), default="savedmodel",
                    help="what is uploaded: a SavedModel bundle (converted in the sandbox) or TFLite "
                         "(its first load in the sandbox)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="smartcache-soak-"))
    try:
        return soak(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def soak(args: argparse.Namespace, work: Path) -> int:
    from smartcache.catalog.config import load_config
    from smartcache.inference import modelformat as mf
    home = bench.setup(work)
    token = load_config(env={}, home=home).inference.token
    model = mf.pack_savedmodel(work / "export" / "mlp", "churn") if args.upload == "savedmodel" \
        else (work / "mlp.tflite").read_bytes()
    upload = upload_request(args.upload, model)
    row = json.dumps({"keys": bench.FEATURES, "values": [0.5] * bench.N_FEATURES, "model": "mlp"}).encode()
    with open(work / "serve.log", "w") as logf:
        port = bench.free_port()
        proc = bench.start_ours(home, port, 2, 8, logf)
        try:
            bench.wait_healthy(port, proc)
            return run_soak(args, work, port, proc, token, upload, row)
        finally:
            bench.stop(proc)


def run_soak(args, work: Path, port: int, proc: subprocess.Popen, token: str, upload: tuple[bytes, dict],
             row: bytes) -> int:
    body_file = work / "row.json"
    body_file.write_bytes(row)
    routes = {"/json": ("/json", "POST"),
              "/decide": (f"/decide?site={bench.SITE}&lfn={bench.UNLISTED}&size=2000000000", "GET")}
    loads = {name: subprocess.Popen(
        [sys.executable, str(HERE / "loadgen.py"), "--port", str(port), "--path", path, "--method", method,
         "--concurrency", str(args.concurrency), "--requests", "100000000", "--max-seconds", str(args.seconds),
         "--warmup", "20", *(["--body", str(body_file)] if method == "POST" else [])],
        stdout=subprocess.PIPE, text=True) for name, (path, method) in routes.items()}
    stop, cycles, rss = threading.Event(), [], []
    t = threading.Thread(target=churn, args=(port, token, upload, args.period, stop, cycles), daemon=True)
    t0 = time.monotonic()
    t.start()
    while any(p.poll() is None for p in loads.values()):
        rss.append((round(time.monotonic() - t0), tree_rss(proc.pid)))
        time.sleep(5)
    stop.set()
    t.join(timeout=600)
    results = {name: json.loads(p.communicate()[0].strip().splitlines()[-1]) for name, p in loads.items()}
    return report(args, results, cycles, rss)


def report(args, results: dict, cycles: list, rss: list) -> int:
    failed = 0
    print(f"soak: {args.seconds:.0f} s, {args.concurrency} connections per route, {args.upload} upload/delete "
          f"every {args.period:.0f} s (or when the last is done), 2 gunicorn workers x 8 threads")
    for name, res in results.items():
        bad = res["errors"] + sum(v for k, v in res["status"].items() if k != "200")
        failed += bad
        print(f"{name:<8} {res['requests']:>8} requests {res['rps']:>7.0f}/s p50 {res['p50_ms']:.2f} ms "
              f"p99 {res['p99_ms']:.2f} ms max {res['max_ms']:.0f} ms  failed {bad}  status {res['status']}")
    ok = [c for c in cycles if (c["upload"], c["predict"], c["delete"], c["after_delete"]) == (200, 200, 200, 404)]
    failed += len(cycles) - len(ok)
    print(f"upload cycles: {len(cycles)}, as expected (200/200/200 then 404): {len(ok)}; upload seconds "
          f"min {min(c['upload_s'] for c in cycles):.1f} max {max(c['upload_s'] for c in cycles):.1f}; "
          f"conversion max |delta| {max((c.get('max_abs_diff') or 0) for c in cycles):.2g}")
    for c in cycles:
        if c not in ok:
            print(f"  cycle failed: {c}")
    total = [(t, sum(v)) for t, v in rss]
    first = [v for t, v in total if 30 <= t <= 90] or [total[0][1]]     # after the workers warmed up
    last = [v for t, v in total if t >= total[-1][0] - 60]
    print(f"RSS master+workers (MB): warm minute (30-90 s) mean {sum(first) / len(first) / 1e6:.0f}, last minute mean "
          f"{sum(last) / len(last) / 1e6:.0f}, max {max(v for _, v in total) / 1e6:.0f}")
    print("RSS series (s: MB per process): " + "; ".join(
        f"{t}: {'/'.join(str(round(v / 1e6)) for v in vs)}" for t, vs in rss[::6]))
    print(f"failed requests: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
