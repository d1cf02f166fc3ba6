"""Where one stateful ``GET /decide`` spends its time, stage by stage, in one worker process.

    python benchmarks/profile_decide.py [--requests 20000] [--cprofile] [--stateless]

Builds the home of benchmarks/bench_decide.py (a next-read model in production, no placement list), the
app the way ``smartcache serve`` builds it in a worker (multiprocess prometheus metrics, the access state,
the feedback writer), and drives its WSGI callable in process with the opens of the generated trace: no
HTTP, no gunicorn. Prints the mean cost of each stage of the request (each timed alone, in a loop over
the same opens, on the live objects, the best of three loops) and of the whole WSGI call; ``--cprofile`` adds the top functions.
The gap between the WSGI call here and bench_decide.py's HTTP latency is gunicorn plus the socket.
``--stateless``: the baseline of bench_decide.py instead (no access state, every file on the placement list),
the WSGI call only.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _environ(path: str) -> dict:
    _, q = path.split("?", 1)
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/decide", "QUERY_STRING": q, "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1"}


def _timed(label: str, fn, items, out: list, repeat: int = 3) -> None:
    """The best of ``repeat`` loops: the machine is shared, the least disturbed loop is the stage's cost."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t0)
    out.append((label, 1e6 * best / len(items)))


def stages(app, paths: list[str]) -> list[tuple[str, float]]:
    """Each stage of decide_answer timed alone over the same opens (each stage does its real work)."""
    from smartcache.inference import cache as C
    from smartcache.inference.fastpath import answer_json, query_args
    s = app.extensions["smartcache"]
    out: list = []
    qs = [p.split("?", 1)[1] for p in paths]
    args = [query_args(q) for q in qs]
    _timed("parse query (query_args)", query_args, qs, out)
    _timed("service.touch", lambda a: s.touch("GET"), args, out)
    _timed("args: site/lfn/size/ts", lambda a: (C._site_lfn(a), C._size_arg(a), C._ts_arg(a)), args, out)
    _timed("placements.get", lambda a: s.placements.get(a["site"]), args, out)
    listed = s.placements.get(args[0]["site"])
    _timed("choose model (_decision_model)", lambda a: C._decision_model(s, a, listed.model, a["site"]), args, out)
    model = C._decision_model(s, args[0], listed.model, args[0]["site"])
    feats = []
    _timed("online.observe_one (state, lock)",
           lambda a: feats.append(s.online.observe_one(a["site"], a["lfn"], float(a["size"]), time.time())),
           args, out)
    _timed("model.predict (TFLite)", lambda f: model.predict(f.reshape(1, -1)), feats, out)
    _timed("_next_gap_answer (predict+cdf)", lambda f: C._next_gap_answer(model, f), feats, out)
    answers = [C._next_gap_answer(model, f) for f in feats[:len(args)]]
    _timed("online.record_one (feedback)", lambda i: s.online.record_one(time.time(), args[i]["site"], args[i]["lfn"],
                                                                          float(args[i]["size"]), "decide",
                                                                          answers[i]["score"], answers[i]["model"]),
           range(len(args)), out)
    _timed("online.maybe_snapshot", lambda a: s.online.maybe_snapshot(), args, out)
    _timed("metrics: decisions counter", lambda a: s.metrics.count_decision(a["source"], a["store"]), answers, out)
    _timed("answer JSON (answer_json)", answer_json, answers, out)
    _timed("metrics: requests+latency", lambda a: s.metrics.observe("/decide", "GET", 200, 1e-4), args, out)
    _timed("decide_answer (all of it)", lambda a: C.decide_answer(s, a, {}), args, out)
    return out


def wsgi_loop(app, envs: list[dict]) -> float:
    def start_response(status, headers):
        if not status.startswith("200"):
            raise SystemExit(f"non-200: {status}")
    t0 = time.perf_counter()
    for e in envs:
        b"".join(app(dict(e), start_response))
    return 1e6 * (time.perf_counter() - t0) / len(envs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--stateless", action="store_true", help="the stateless baseline: the WSGI call only")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="profile-decide-"))
    try:
        import bench_decide
        home = work / "home"
        paths = bench_decide.setup(home, quick=True)
        if args.stateless:
            bench_decide._list_every_file(home, paths)
            (home / "config.toml").write_text(f'[inference]\ntoken = "{bench_decide.TOKEN}"\naccess_state = false\n')
        os.environ["SMARTCACHE_HOME"] = str(home)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "prom")     # as `smartcache serve` does
        (work / "prom").mkdir()
        from smartcache.catalog import load_config
        from smartcache.inference import create_app
        app = create_app(load_config())
        envs = [_environ(p) for p in (paths * (1 + args.requests // len(paths)))[:args.requests]]
        wsgi_loop(app, envs[:2000])                       # warm: model loaded, numba compiled, site cached
        us = min(wsgi_loop(app, envs) for _ in range(3))
        kind = "stateless" if args.stateless else "stateful"
        print(f"WSGI call (fast path, in process): {us:.1f} us per {kind} /decide, {args.requests} opens")
        for label, t in ([] if args.stateless else stages(app, paths[:min(len(paths), args.requests)])):
            print(f"  {label:34}{t:8.1f} us")
        if args.cprofile:
            prof = cProfile.Profile()
            prof.enable()
            wsgi_loop(app, envs)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        app.extensions["smartcache"].close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
