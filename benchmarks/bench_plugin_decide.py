"""What one XrdPfc::Decision::Decide() of the smartcache plugin costs an open, with and without the service call.

    python benchmarks/bench_plugin_decide.py [--asks 2000] [--memory 200000]

The plugin is built as XCache loads it and driven by a small C++ harness (bench_plugin_decide.cc: dlopen,
XrdPfcGetDecision, ConfigDecision, then Decide() timed call by call on one thread). Real parts around it:
``smartcache serve`` (gunicorn, 2 workers, 127.0.0.1) with a next-read model in production, and an XRootD
origin holding the files (the plugin stats them for their size). Scenarios, in one run:

- ``list``: the file is on the placement list, reporting off -- the answer from memory (the baseline: what
  every open cost before the plugin talked to the service);
- ``list+report``: the same, each open queued for ``POST /access`` (token file set);
- ``cached``: the service answered this file before; the answer is reused (and the open queued);
- ``ask``: a file the plugin never saw: GET /decide (new TCP connection, the service updates its state and
  scores the open with the model) -- ts only;
- ``ask+size``: the same plus the XrdCl stat at the origin for the size (first sight of each file);
- ``down``: the service refuses connections: one failed call, then the default answer from memory for
  ``retry`` seconds.

Prints p50/p99 per scenario in microseconds and the ratio to ``list``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench_decide import TOKEN, serve     # the same service start, waited for by /healthz
from bench_inference import free_port

HERE = Path(__file__).resolve().parent
INCLUDE = "/usr/include/xrootd"


def build_harness(work: Path) -> Path:
    exe = work / "bench_plugin_decide"
    cmd = ["g++", "-std=c++14", "-O2", "-Wall", f"-I{INCLUDE}", "-o", str(exe), str(HERE / "bench_plugin_decide.cc"),
           "-ldl", "-lXrdServer", "-lXrdUtils", "-pthread"]  # XrdOss: libXrdServer
    subprocess.run(cmd, check=True)
    return exe


def setup_service(home: Path) -> str:
    """A catalog with a production next-read model (a tiny generated scan trace) and its site; the site."""
    from smartcache.catalog import open_store
    from smartcache.tasks.common.trace import make_trace, write_trace_csv
    from smartcache.tasks.generate.traces import generate_trace
    from smartcache.tasks.train.nextgap import NextGapConfig
    from smartcache.tasks.train.trace import register_trace_file, train_on_trace
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(f'[inference]\ntoken = "{TOKEN}"\n')
    store = open_store(f"sqlite:///{home}/catalog.db", migrate=True)
    req = generate_trace("scan", seed=5, scale=0.05)
    trace = make_trace(req.ts, req.lfn, req.size, req.site)
    path = write_trace_csv(trace, home / "trace.csv")
    model = train_on_trace(store, trace, "nextgap", register_trace_file(store, path, trace),
                           cfg=NextGapConfig(epochs=2))
    store.set_model_stage(model.name, model.version, "production", "bench")
    site = trace.sites[0]
    store.add_site(site, 10**15)
    store.close()
    return site


def warm(port: int, site: str) -> None:
    """Each gunicorn worker's first /decide compiles the state's functions (~1 s): not the plugin's cost."""
    for i in range(20):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/decide?site={site}&lfn=/store/warm/{i}.root",
                                    timeout=30) as r:
            r.read()


def run(exe: Path, lib: Path, params: str, mode: str, n: int, lfn: str) -> dict:
    out = subprocess.run([str(exe), str(lib), params, mode, str(n), lfn], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"harness failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--asks", type=int, default=2000, help="Decide() calls that ask the service")
    ap.add_argument("--memory", type=int, default=200_000, help="Decide() calls answered from memory")
    args = ap.parse_args(argv)
    try:
        import XRootD.client  # noqa: F401  (before TensorFlow: loaded after it, the client crashes the process)
    except ImportError:
        pass
    from smartcache.tasks.site import xcache as X
    from smartcache.tasks.site.plugin import build_plugin, decision_params
    work = Path(tempfile.mkdtemp(prefix="bench-plugin-"))
    work.chmod(0o755)
    servers, proc = [], None
    try:
        lib = build_plugin(work / "plugin")
        exe = build_harness(work)
        site = setup_service(work / "home")
        port = free_port()
        proc = serve(work / "home", port, workers=2)
        warm(port, site)
        prefix = "/store/mc/Bench26/Plugin/AODSIM/v1/0000/f"
        X.make_files(work / "origin" / "data", {f"{prefix}{i}.root": 1000 + i for i in range(args.asks)})
        origin = X.start_origin(work / "origin", "bench-origin", trace_reads=False)
        servers.append(origin)
        listed = work / "list.txt"
        listed.write_text(f"{prefix}listed.root\n")
        token = work / "token"
        token.write_text(TOKEN)
        url = f"http://127.0.0.1:{port}"
        base = dict(list_path=listed, reload=5, site=site, timeout_ms=2000)
        p_list = decision_params(**base)
        p_report = decision_params(**base, decide_url=url, token_file=token)
        p_ask = decision_params(**base, decide_url=url, token_file=token)
        p_size = decision_params(**base, decide_url=url, token_file=token, origin=f"127.0.0.1:{origin.port}",
                                 origin_timeout_ms=1000)
        p_down = decision_params(**base, decide_url=f"http://127.0.0.1:{free_port()}", retry=3600)
        res = {
            "list": run(exe, lib, p_list, "same", args.memory, f"{prefix}listed.root"),
            "list+report": run(exe, lib, p_report, "same", args.memory, f"{prefix}listed.root"),
            "cached": run(exe, lib, p_report, "same", args.memory, f"{prefix}cached.root"),
            "ask": run(exe, lib, p_ask, "unique", args.asks, "/store/mc/Bench26/Plugin/AODSIM/v1/0000/g"),
            "ask+size": run(exe, lib, p_size, "unique", args.asks, prefix),
            "down": run(exe, lib, p_down, "same", args.memory, f"{prefix}down.root"),
        }
        base_p50 = res["list"]["p50_us"]
        print(f"Decide() of the smartcache plugin, one thread, service = smartcache serve (2 workers) with a "
              f"next-read model, origin = xrootd on 127.0.0.1:")
        print(f"{'scenario':14}{'calls':>9}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}{'p50 / list':>12}")
        for name, r in res.items():
            print(f"{name:14}{r['calls']:9d}{r['p50_us']:10.2f}{r['p99_us']:10.2f}{r['mean_us']:10.2f}"
                  f"{r['p50_us'] / base_p50:12.1f}")
        print(json.dumps(res))
    finally:
        for s in servers:
            s.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
