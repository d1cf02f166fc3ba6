"""The stateful /decide: what keeping per-site access state costs, in one run.

    python benchmarks/bench_decide.py [--quick] [--workers 2] [--files 1000000]

1. In process: the access state's cost per request (one open, and batches), the bytes it keeps per tracked
   file, and a snapshot and restore of ``--files`` tracked files.
2. Over HTTP: ``smartcache serve`` (gunicorn, 2 workers, 127.0.0.1) with a next-read model in production;
   load from benchmarks/loadgen.py cycling through the opens of a generated trace (every query an access:
   the state changes under the load), at 1, 16 and 32 connections: p50/p99 latency and throughput. Baseline,
   same run, same server code: the access state turned off (``[inference] access_state = false``), the
   same queries answered from the site's placement list -- the stateless /decide as it was. Also the
   server's CPU time per request (both workers, from /proc): on a shared, loaded machine the steadier
   figure of what a request costs.
Targets (issue 14): p50 <= 1 ms, >= 3,000 req/s on 2 cores, <= 200 bytes per tracked file, a restore of
1M tracked files in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token-0123456789abcdef"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def in_process(work: Path, n_files: int) -> dict:
    import numpy as np

    from smartcache.inference.state import AccessState, Capacity, bytes_per_file
    st = AccessState.open(work / "state-bench", Capacity(files=int(n_files / 0.7)))
    site = ["T2_IT_Pisa"] * 10_000
    t_batch = t_one = 0.0
    done = 0
    ts0 = 1.79e9
    while done < n_files:
        lfns = [f"/store/mc/Bench/P{(done + i) // 500}/MINIAODSIM/v1/0000/{done + i:09d}.root" for i in range(10_000)]
        t0 = time.perf_counter()
        st.observe(site, lfns, [2.5e9] * 10_000, ts0 + np.arange(done, done + 10_000, dtype=float))
        t_batch += time.perf_counter() - t0
        done += 10_000
    t0 = time.perf_counter()
    for i in range(2000):
        st.observe_one(site[0], f"/store/mc/Bench/P0/MINIAODSIM/v1/0000/{i:09d}.root", 2.5e9, ts0 + n_files + i)
    t_one = (time.perf_counter() - t0) / 2000
    stats = st.stats()
    t0 = time.perf_counter()
    snap = st.snapshot(work / "snap.npz")
    t_snap = time.perf_counter() - t0
    t0 = time.perf_counter()
    AccessState.open(work / "state-restored", snapshot=snap).close()
    t_restore = time.perf_counter() - t0
    st.close()
    return {"tracked_files": stats["tracked_files"], "batch_us_per_access": 1e6 * t_batch / n_files,
            "one_access_us": 1e6 * t_one, "bytes_per_tracked_file": stats["bytes_per_tracked_file"],
            "bytes_per_file_at_max_load": bytes_per_file(), "snapshot_s": t_snap, "restore_s": t_restore,
            "snapshot_mb": snap.stat().st_size / 1e6}


def setup(home: Path, quick: bool) -> list[str]:
    """A catalog with a production next-read model, its site and a placement list of every file; the paths."""
    from smartcache.catalog import open_store
    from smartcache.tasks.common.trace import make_trace, write_trace_csv
    from smartcache.tasks.generate.traces import generate_trace
    from smartcache.tasks.train.nextgap import NextGapConfig
    from smartcache.tasks.train.trace import register_trace_file, train_on_trace
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(f'[inference]\ntoken = "{TOKEN}"\n')
    store = open_store(f"sqlite:///{home}/catalog.db", migrate=True)
    req = generate_trace("scan", seed=5, scale=0.05 if quick else 0.15)
    trace = make_trace(req.ts, req.lfn, req.size, req.site)
    path = write_trace_csv(trace, home / "trace.csv")
    model = train_on_trace(store, trace, "nextgap", register_trace_file(store, path, trace),
                           cfg=NextGapConfig(epochs=2))
    store.set_model_stage(model.name, model.version, "production", "bench")
    site = trace.sites[0]
    store.add_site(site, 10**15)
    store.close()
    return [f"/decide?{urllib.parse.urlencode({'site': s, 'lfn': x, 'size': int(z)})}"
            for s, x, z in zip(req.site, req.lfn, req.size)]


def serve(home: Path, port: int, workers: int) -> subprocess.Popen:
    """``smartcache serve`` of ``home`` on 127.0.0.1:``port``, returned once ``/healthz`` answers."""
    env = {"SMARTCACHE_HOME": str(home), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "smartcache.submit.cli.group", "serve", "--port", str(port),
                             "--workers", str(workers)], env=env, stdout=open(home / "serve.log", "a"),
                            stderr=subprocess.STDOUT)
    import urllib.request
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"serve did not start: {(home / 'serve.log').read_text()[-2000:]}")


def _list_every_file(home: Path, paths: list[str]) -> None:
    """The baseline answers from a placement list holding every file (a dict lookup, no state, no model)."""
    from smartcache.catalog import open_store
    store = open_store(f"sqlite:///{home}/catalog.db")
    qs = [urllib.parse.parse_qs(p.split("?", 1)[1]) for p in paths]
    site, names = qs[0]["site"][0], sorted({q["lfn"][0] for q in qs})
    model = store.get_model("nextgap")
    lst = home / "list.txt"
    lst.write_text(f"# smartcache placement site={site} model={model.ref}\n" + "\n".join(names) + "\n")
    store.add_placement(site, str(lst), len(names), 1, model=(model.name, model.version))
    store.close()


def server_cpu_s(proc: subprocess.Popen) -> float | None:
    """CPU seconds used so far by the server's workers (Linux /proc): the cost per request that a shared,
    loaded machine disturbs far less than req/s."""
    try:
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        total = 0
        for pid in kids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])      # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def load(port: int, paths_file: Path, concurrency: int, requests: int) -> dict:
    out = subprocess.run([sys.executable, str(HERE / "loadgen.py"), "--port", str(port), "--method", "GET",
                          "--paths", str(paths_file), "--concurrency", str(concurrency), "--requests", str(requests),
                          "--max-seconds", "40"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def http_runs(home: Path, paths: list[str], workers: int, quick: bool) -> dict:
    import socket
    paths_file = home / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    results = {}
    for label, state in (("stateful", True), ("stateless", False)):
        if not state:
            _list_every_file(home, paths)
        cfg = home / "config.toml"
        cfg.write_text(f'[inference]\ntoken = "{TOKEN}"\naccess_state = {"true" if state else "false"}\n')
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = serve(home, port, workers)
        try:
            for c in (1, 16, 32):
                n = (2000 if quick else 8000) if c == 1 else (6000 if quick else 30000)
                cpu0 = server_cpu_s(proc)
                results[(label, c)] = r = load(port, paths_file, c, n)
                cpu1 = server_cpu_s(proc)
                r["server_cpu_us"] = 1e6 * (cpu1 - cpu0) / r["requests"] if cpu0 is not None and cpu1 else float("nan")
                log(f"{label} c={c}: {results[(label, c)]}")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--files", type=int, default=1_000_000, help="tracked files for the snapshot/restore figure")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-decide-"))
    try:
        ip = in_process(work, 200_000 if args.quick else args.files)
        print(f"access state, in process: {ip['batch_us_per_access']:.1f} us per access in batches of 10k, "
              f"{ip['one_access_us']:.1f} us for one (observe_one, /decide's path); {ip['bytes_per_tracked_file']:.0f} bytes per tracked file "
              f"at this fill ({ip['bytes_per_file_at_max_load']:.0f} at the fill where stale entries go); "
              f"{ip['tracked_files']:,} files: snapshot {ip['snapshot_s']:.2f} s ({ip['snapshot_mb']:.0f} MB), "
              f"restore {ip['restore_s']:.2f} s")
        paths = setup(work / "home", args.quick)
        res = http_runs(work / "home", paths, args.workers, args.quick)
        print(f"\nGET /decide over HTTP, {args.workers} workers, opens of a generated trace cycled:")
        print(f"{'':28}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'non-200':>9}{'server CPU us/req':>19}")
        for (label, c), r in res.items():
            bad = r["requests"] - r["status"].get("200", 0) + r["errors"]
            print(f"{label + f' c={c}':28}{r['p50_ms']:9.3f}{r['p99_ms']:9.3f}{r['rps']:9.0f}{bad:9d}"
                  f"{r['server_cpu_us']:19.0f}")
        for c in (1, 16, 32):
            a, b = res[("stateful", c)], res[("stateless", c)]
            print(f"c={c}: stateful/stateless throughput {a['rps'] / b['rps']:.2f}x, p50 {a['p50_ms'] / b['p50_ms']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
