"""The stateful /decide: every query is an access; the service scores it as the simulator does (parity),
keeps it as feedback, and shares one state between gunicorn workers."""

from __future__ import annotations

import json
import shutil
import urllib.parse
from dataclasses import replace

import numpy as np
import pytest
from inference_support import TOKEN, make_config

from smartcache.catalog import open_store

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}
N_PARITY = 3000


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A next-read model trained on the first part of a small scan trace, in production."""
    from smartcache.tasks.common.trace import make_trace, write_trace_csv
    from smartcache.tasks.generate.traces import generate_trace
    from smartcache.tasks.train.nextgap import NextGapConfig
    from smartcache.tasks.train.trace import register_trace_file, train_on_trace
    tmp = tmp_path_factory.mktemp("online")
    url = f"sqlite:///{tmp}/catalog.db"
    store = open_store(url, migrate=True)
    req = generate_trace("scan", seed=3, scale=0.08)
    trace = make_trace(req.ts, req.lfn, req.size, req.site)
    path = write_trace_csv(trace, tmp / "scan.csv")
    until = float(trace.ts[len(trace) // 2] // 86400 * 86400)
    model = train_on_trace(store, trace, "nextgap", register_trace_file(store, path, trace), until=until,
                           cfg=NextGapConfig(epochs=3))
    store.set_model_stage(model.name, model.version, "production", "test")
    store.add_site(trace.sites[0], 10**13)          # /decide answers for the catalog's sites
    store.close()
    return url, trace, model


def _app(tmp_path, url):
    from smartcache.inference import create_app
    cfg = replace(make_config(tmp_path, token=TOKEN), catalog_url=url)
    store = open_store(url)
    return create_app(cfg, store, refresh_seconds=0), cfg


def _opens(trace, lo, hi):
    lfns = trace.lfns.take(__import__("pyarrow").array(trace.obj[lo:hi])).to_pylist()
    return [{"site": trace.sites[trace.site[i]], "lfn": lfns[i - lo], "size": int(trace.size[i]),
             "ts": float(trace.ts[i])} for i in range(lo, hi)]


def _simulated(url, trace, n):
    """What the simulator's model policy computes for the first n requests: the score and the decision."""
    from smartcache.inference.online import DEFAULT_HORIZON_S, decide_score
    from smartcache.tasks.simulate.model import load_scorer, score_requests
    store = open_store(url)
    scorer = load_scorer(store, "nextgap")
    store.close()
    scores = score_requests(scorer, trace.take(np.arange(n)))
    p = decide_score(scores.probs, scores.edges, DEFAULT_HORIZON_S)
    return p, p >= 0.5


def test_replay_through_decide_gives_the_simulators_scores(tmp_path, trained):
    url, trace, model = trained
    app, cfg = _app(tmp_path, url)
    client = app.test_client()
    got = []
    for lo in range(0, N_PARITY - 200, 400):           # the batch route ...
        r = client.post("/decide", json={"opens": _opens(trace, lo, min(lo + 400, N_PARITY - 200))})
        assert r.status_code == 200, r.get_json()
        got += r.get_json()
    for o in _opens(trace, N_PARITY - 200, N_PARITY):  # ... and single queries on the WSGI fast path
        r = client.get("/decide?" + urllib.parse.urlencode(o))
        assert r.status_code == 200
        got.append(r.get_json())
    assert all(a["source"] == "model" and a["model"] == model.ref for a in got), got[:3]
    want, store = _simulated(url, trace, N_PARITY)
    score = np.array([a["score"] for a in got])
    assert np.max(np.abs(score - want)) <= 1e-5
    assert [a["store"] for a in got] == store.tolist()
    # two opens of the same hot file are not answered alike: the state saw the first
    svc = app.extensions["smartcache"]
    st = client.get("/status").get_json()["access_state"]
    assert st["accesses"] == N_PARITY and 0 < st["tracked_files"] <= N_PARITY and st["bytes_per_tracked_file"] > 0
    svc.close()


def test_access_route_needs_the_token_and_updates_state_and_feedback(tmp_path, trained):
    url, trace, _ = trained
    app, cfg = _app(tmp_path, url)
    client = app.test_client()
    body = {"accesses": _opens(trace, 0, 50)}
    assert client.post("/access", json=body).status_code == 401
    r = client.post("/access", json=body, headers=AUTH)
    assert r.status_code == 200 and r.get_json() == {"recorded": 50}
    assert client.post("/access", json={"accesses": [{"site": "S"}]}, headers=AUTH).status_code == 400
    assert client.post("/access", json={"accesses": "x"}, headers=AUTH).status_code == 400
    svc = app.extensions["smartcache"]
    assert svc.online.stats()["accesses"] == 50
    svc.close()
    from smartcache.tasks.feedback.partitions import read_feedback
    fb = read_feedback(cfg.data_root / "feedback")
    assert fb.num_rows == 50 and set(fb.column("source").to_pylist()) == {"access"}
    store = open_store(url)
    names = [d.name for d in store.list_datasets(kind="feedback")]
    store.close()
    assert names and all(n.startswith(f"feedback/{trace.sites[0]}/") for n in names)


def test_state_survives_a_restart_from_its_snapshot(tmp_path, trained):
    url, trace, _ = trained
    app, cfg = _app(tmp_path, url)
    client = app.test_client()
    assert client.post("/decide", json={"opens": _opens(trace, 0, 500)}).status_code == 200
    before = app.extensions["smartcache"].online.stats()
    app.extensions["smartcache"].close()             # a clean stop writes the snapshot
    shutil.rmtree(cfg.home / "state" / "live")       # as after a reboot: only the snapshot is left
    app2, _ = _app(tmp_path, url)
    after = app2.extensions["smartcache"].online.stats()
    assert (after["tracked_files"], after["accesses"]) == (before["tracked_files"], before["accesses"]) > (0, 0)
    # the restored state answers the next request as the unbroken one would have
    nxt = _opens(trace, 500, 501)[0]
    a = app2.test_client().get("/decide?" + urllib.parse.urlencode(nxt)).get_json()
    want, _ = _simulated(url, trace, 501)
    assert abs(a["score"] - want[-1]) <= 1e-5
    app2.extensions["smartcache"].close()


def test_bad_decide_queries_are_json_4xx_and_change_no_state(tmp_path, trained):
    url, trace, _ = trained
    app, _ = _app(tmp_path, url)
    client = app.test_client()
    for q in ("site=S", "site=S&lfn=/x&ts=abc", "site=S&lfn=/x&ts=nan", "site=S&lfn=/x&size=-1",
              "site=S&lfn=/x&model=nosuchmodel"):
        r = client.get("/decide?" + q)
        assert 400 <= r.status_code < 500 and "error" in r.get_json(), q
    assert client.post("/decide", data=b"not json", content_type="application/json").status_code == 400
    assert app.extensions["smartcache"].online.stats()["accesses"] == 0
    app.extensions["smartcache"].close()


def test_gunicorn_workers_share_one_state_and_a_clean_stop_loses_no_access(tmp_path, trained):
    """Two gunicorn workers, one query per connection (either worker answers): the simulator's scores, and
    after SIGTERM every access is in the feedback partitions."""
    from test_inference_serve import http, start_serve, stop_serve

    from smartcache.tasks.feedback.partitions import read_feedback
    url, trace, _ = trained
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(f'[catalog]\nurl = "{url}"\n[inference]\ntoken = "{TOKEN}"\n')
    proc, port = start_serve(home)
    n = 600
    got = []
    try:
        for o in _opens(trace, 0, n):
            status, body = http(port, "/decide?" + urllib.parse.urlencode(o), headers={"Connection": "close"})
            assert status == 200, body
            got.append(json.loads(body))
    finally:
        stop_serve(proc)
    want, _ = _simulated(url, trace, n)
    assert np.max(np.abs(np.array([a["score"] for a in got]) - want)) <= 1e-5
    fb = read_feedback(home / "data" / "feedback")
    assert fb.num_rows == n, "every access of a cleanly stopped service is kept"
    assert sorted(fb.column("timestamp").to_pylist()) == sorted(float(t) for t in trace.ts[:n])
