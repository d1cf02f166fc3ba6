"""The whole online loop with real parts, one test (issue 14, item 6):

a real XRootD origin and XCache whose decision plugin asks the real service's /decide (``smartcache serve``
under gunicorn on 127.0.0.1, a next-read model in production) -> clients read files through the cache -> the
service's feedback partitions hold those opens with the sizes the plugin sent -> ``smartcache submit retrain
--executor condor --wait`` on the project's real HTCondor pool -> the gate promotes the new version -> the
service answers /decide, and so the plugin, with it, without a restart.

The data make the promotion meaningful: the production model was trained on another kind of workload (the
Zipf family), the site's own history (the drift family, posted to the service's ``POST /access`` as a source
that saw the opens would) is scans whose habits change; a model trained on the site's feedback beats it and
the best heuristic on the held-out days (which hold the opens made through the cache here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner
from test_inference_serve import http, start_serve, stop_serve
from xcache_fixtures import cached, require_xrootd

from smartcache.catalog import load_config, open_store
from smartcache.tasks.site import xcache as X
from smartcache.tasks.site.plugin import build_plugin, decisionlib_line

pytestmark = [pytest.mark.slow, pytest.mark.condor]
TOKEN = "loop-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
WEEK = 7 * 86400
CACHE_FRACTION = 0.02          # the site's cache: 2 % of the held-out working set
N_FILES = 6                    # files read through the cache: one on the plugin's list, five asked about


def _history(now: float, family: str = "drift", scale: float = 0.3):
    """The site's past: a generated family moved by whole weeks (time-of-day and -week features unchanged, so
    the same data every run) to end before today."""
    from smartcache.tasks.generate.traces import generate_trace
    r = generate_trace(family, seed=1, scale=scale)
    today = now // 86400 * 86400
    shift = np.floor((today - 1 - r.ts.max()) / WEEK) * WEEK
    return r.ts + shift, r.site, r.lfn, r.size


def _cache_size(ts, lfns, sizes, sites, now: float, fraction: float = CACHE_FRACTION) -> int:
    """``fraction`` of the working set of what the gate counts: the held-out days, by the retrain's own rule
    (today's opens made here are among the feedback days)."""
    from datetime import date, timedelta

    from smartcache.tasks.common.trace import make_trace
    from smartcache.tasks.feedback import held_out_day
    epoch = date(1970, 1, 1)
    days = [epoch + timedelta(days=int(d)) for d in np.unique(np.append(ts, now) // 86400)]
    held = (held_out_day(days) - epoch).days * 86400
    past = make_trace(ts, lfns, sizes, sites)
    return int(past.take(past.ts >= held).working_set() * fraction)


def _production_model(store, work: Path):
    """The shared next-read model in production: trained on another workload (the Zipf family)."""
    from smartcache.tasks.common.trace import make_trace, write_trace_csv
    from smartcache.tasks.generate.traces import generate_trace
    from smartcache.tasks.train.nextgap import NextGapConfig
    from smartcache.tasks.train.trace import register_trace_file, train_on_trace
    z = generate_trace("zipf", seed=2, scale=0.03)
    trace = make_trace(z.ts, z.lfn, z.size, z.site)
    path = write_trace_csv(trace, work / "zipf.csv")
    model = train_on_trace(store, trace, "cachenet", register_trace_file(store, path, trace),
                           cfg=NextGapConfig(epochs=8))
    store.set_model_stage(model.name, model.version, "production", "the loop test's starting point")
    return model


def _post_history(port: int, ts, sites, lfns, sizes) -> None:
    """The history through the service's own route for opens seen without asking (batches of 10k)."""
    for lo in range(0, len(ts), 10_000):
        body = {"accesses": [{"site": s, "lfn": x, "size": int(z), "ts": float(t)}
                             for t, s, x, z in zip(ts[lo:lo + 10_000], sites[lo:lo + 10_000],
                                                   lfns[lo:lo + 10_000], sizes[lo:lo + 10_000])]}
        status, out = http(port, "/access", json.dumps(body).encode(), headers=AUTH)
        assert status == 200, out


def _new_files(lfns, n: int) -> dict[str, int]:
    """New files of the datasets the site read last (the model's dataset features are live for them)."""
    folders = []
    for lfn in reversed(lfns):
        folder = lfn.rsplit("/", 1)[0]
        if folder not in folders:
            folders.append(folder)
        if len(folders) == n:
            break
    return {f"{folder}/loop-{i}.root": 200_000 + 37_000 * i for i, folder in enumerate(folders)}


def _read(cache: X.Server, lfn: str, size: int) -> bytes:
    from smartcache.tasks.site.agent import xrootd_client
    f = xrootd_client().File()
    status, _ = f.open(f"{cache.url}/{lfn}", timeout=60)
    assert status.ok, status.message
    try:
        status, data = f.read(0, size, timeout=60)
        assert status.ok, status.message
        return bytes(data)
    finally:
        f.close(timeout=10)


def _feedback_of(home: Path, site: str, lfns, since: float, want: int, timeout: float = 60.0):
    """The feedback rows of these files since ``since``, once there are ``want`` of them (the plugin reports
    every second, the service writes every 2 s)."""
    from smartcache.tasks.feedback import read_feedback
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in read_feedback(home / "data" / "feedback", site).to_pylist()
                if r["lfn"] in lfns and r["timestamp"] >= since]
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _decide(port: int, site: str, lfn: str) -> dict:
    status, body = http(port, "/decide?" + urllib.parse.urlencode({"site": site, "lfn": lfn}))
    assert status == 200, body
    return json.loads(body)


def _node_logs(store, workflow: str) -> str:
    """The tails of the last run's node logs: what a failed node said."""
    runs = store.list_runs(workflow=workflow, limit=1)
    if not runs or not runs[0].dag_dir:
        return ""
    out = []
    for p in sorted(Path(runs[0].dag_dir).rglob("*")):
        if p.is_file() and p.suffix in (".err", ".out", ".log") and p.stat().st_size:
            out.append(f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}")
    return "".join(out)


def test_the_online_loop_with_real_parts(condor_pool, condor_tmp_path, monkeypatch):
    require_xrootd()
    for var in [v for v in os.environ if v.startswith("SMARTCACHE_") and v != "SMARTCACHE_POOL_ROOT"]:
        monkeypatch.delenv(var)
    # the home the pool's jobs and this process share (the pool's job user must enter it: no secrets in it),
    # and the service's own, private home (its token) pointing at the same catalog and data
    home = condor_tmp_path / "home"
    home.mkdir(mode=0o755)
    monkeypatch.setenv("SMARTCACHE_HOME", str(home))
    cfg = load_config()
    serve_home = condor_tmp_path / "serve"
    serve_home.mkdir(mode=0o700)
    (serve_home / "config.toml").write_text(f'[catalog]\nurl = "{cfg.catalog_url}"\n[data]\nroot = "{cfg.data_root}"\n'
                                            f'[inference]\ntoken = "{TOKEN}"\n')
    (serve_home / "config.toml").chmod(0o600)
    store = open_store(cfg.catalog_url, migrate=True)
    # the xrootd user must reach every parent folder of the site: not under pytest's or the pool's tmp dirs
    site_dir = Path(tempfile.mkdtemp(prefix="smartcache-loop-"))
    site_dir.chmod(0o755)
    servers: list[X.Server] = []
    serve = None
    try:
        # -- the service: a production model, the site's history, a token -----------------------------
        first = _production_model(store, condor_tmp_path)
        ts, sites, lfns, sizes = _history(time.time())
        site = sites[0]
        store.add_site(site, _cache_size(ts, lfns, sizes, sites, time.time()))
        serve, port = start_serve(serve_home)
        _post_history(port, ts, sites, lfns, sizes)

        # -- the site: origin, XCache, the plugin asking the service and reporting to it -------------
        files = _new_files(lfns, N_FILES)
        names = sorted(files)
        listed, asked = names[0], names[1:]
        X.make_files(site_dir / "origin" / "data", files, seed=11)
        origin = X.start_origin(site_dir / "origin", "loop-origin")
        servers.append(origin)
        token_file = site_dir / "token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        X.give_to_server(token_file)                     # read by the plugin inside XCache (the xrootd user)
        plist = site_dir / "lists" / f"{site}.txt"
        plist.parent.mkdir()
        plist.write_text(f"# smartcache placement site={site}\n{listed}\n")
        plist.chmod(0o644)
        lib = build_plugin(site_dir / "plugin")
        # a generous deadline: each gunicorn worker's first /decide compiles the access state's functions
        line = decisionlib_line(lib, list_path=plist, reload=0, decide_url=f"http://127.0.0.1:{port}", site=site,
                                timeout_ms=10_000, origin=f"127.0.0.1:{origin.port}", token_file=token_file)
        cache = X.start_cache(site_dir / "cache", f"127.0.0.1:{origin.port}", "loop-xcache",
                              settings=X.CacheSettings(trace="debug"), decisionlib=line)
        servers.append(cache)

        # -- clients read through the cache: every file twice ------------------------------------------
        since = time.time()
        decisions = X.log_size(cache)
        for lfn in names + names:
            assert _read(cache, lfn, files[lfn]) == (site_dir / "origin" / "data" / lfn.lstrip("/")).read_bytes()
        opened = time.time()
        rows = _feedback_of(home, site, set(names), since, 2 * N_FILES)
        # every open once, with the size the plugin got from the origin and the time of the open
        assert sorted(r["lfn"] for r in rows) == sorted(names + names)
        assert all(r["size"] == files[r["lfn"]] for r in rows), rows
        assert all(since <= r["timestamp"] <= opened for r in rows)
        by_source = {s: sorted(r["lfn"] for r in rows if r["source"] == s) for s in ("decide", "access")}
        # first opens of unlisted files asked /decide; the listed file and the second opens (a cached answer)
        # were answered from memory and reported to /access
        assert by_source == {"decide": sorted(asked), "access": sorted([listed, listed, *asked])}
        threshold = float(first.params.get("threshold", 0.5))
        for r in rows:
            if r["source"] != "decide":
                continue
            assert r["model"] == first.ref
            if r["score"] >= threshold:     # the service said store: XCache cached it
                assert cached(Path(cache.config).parent / "data", r["lfn"])
            else:                           # it said skip: XCache declined at the open
                X.wait_for_log(cache, rf"(?m)Attach\(\) decision decline \S*{re.escape(r['lfn'])}$", decisions)
        assert cached(Path(cache.config).parent / "data", listed)
        today = time.strftime("%Y-%m-%d", time.gmtime(since))
        assert store.get_dataset(f"feedback/{site}/{today}").kind == "feedback"

        # -- retrain on the real pool ------------------------------------------------------------------
        from smartcache.submit import retrain as RT
        from smartcache.submit.cli import cli as group
        t0 = time.monotonic()
        res = CliRunner().invoke(group, ["submit", "retrain", "--site", site, "--executor", "condor", "--wait",
                                         "--days", "36", "--epochs", "8", "--no-progress"])
        assert res.exit_code == 0, res.output + _node_logs(store, RT.WORKFLOW)
        print(f"retrain DAG on the pool: {time.monotonic() - t0:.0f} s")
        run = store.list_runs(workflow=RT.WORKFLOW, limit=1)[0]
        assert (run.status, run.executor) == ("done", "condor")
        # the trace it trained and evaluated on holds the opens made through the cache, with their sizes
        exported = pacsv.read_csv(Path(cfg.data_root) / "retrain" / f"run-{run.id}" / "trace.csv").to_pylist()
        ours = [r for r in exported if r["lfn"] in files]
        assert sorted(r["lfn"] for r in ours) == sorted(names + names)
        assert all(r["size"] == files[r["lfn"]] for r in ours)
        verdict = RT.verdict_of(store, run.id)
        new = store.get_model(f"cachenet-{site}", 1)
        print(f"gate: {new.ref} -> {'production' if verdict['promote'] else 'staging'}: {verdict['reason']}")
        assert verdict["promote"], verdict["reason"]
        assert new.stage == "production" and f"beats the production model {first.ref}" in new.stage_reason

        # -- the service answers with the new version, no restart; so does the plugin ------------------
        deadline = time.monotonic() + 60
        while (answer := _decide(port, site, f"{asked[0]}.probe"))["model"] != new.ref:
            assert time.monotonic() < deadline, answer
            time.sleep(1)
        assert answer["source"] == "model" and serve.poll() is None
        fresh = {f"{listed.rsplit('/', 1)[0]}/loop-after.root": 123_456}
        X.make_files(site_dir / "origin" / "data", fresh, seed=12)     # 0644: the origin reads it as it is
        since = time.time()
        (after,) = fresh
        assert _read(cache, after, fresh[after]) == (site_dir / "origin" / "data" / after.lstrip("/")).read_bytes()
        (row,) = _feedback_of(home, site, {after}, since, 1)
        assert (row["source"], row["model"], row["size"]) == ("decide", new.ref, fresh[after])
    finally:
        for server in reversed(servers):
            server.stop()
        if serve is not None:
            stop_serve(serve)
        store.close()
        shutil.rmtree(site_dir, ignore_errors=True)
