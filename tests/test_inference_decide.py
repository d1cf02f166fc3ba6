"""``/decide`` and ``/placements``: answers from the site's list, from the model, or the default."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inference_support import artifact, built_models, make_app, register, service
from smartcache.inference.lfn import feature_row, parse_lfn
from smartcache.inference.runtime import Predictor

SITE = "T2_IT_Pisa"
MC = "/store/mc/RunIISummer20UL18MiniAODv2/TTToSemiLeptonic_TuneCP5/MINIAODSIM/106X_upgrade2018_v16-v1/2520000/0A1B2C.root"
DATA = "/store/data/Run2018D/SingleMuon/AOD/12Nov2019_UL2018-v2/000/320/500/00000/ABCD.root"


@pytest.fixture(scope="session")
def built():
    return built_models()


@pytest.fixture(params=[True, False], ids=["fastpath", "flask"])
def env(request, tmp_path, built):
    app, store = make_app(tmp_path, fast_path=request.param)
    model = register(store, built, "v1", feature_defaults={"n_access_7d": 0.0}, threshold=0.5)
    store.add_site(SITE, 10**15)
    yield app, store, model, tmp_path
    store.close()


def write_parquet(path, rows):
    pq.write_table(pa.table({"lfn": [r[0] for r in rows], "score": [r[1] for r in rows]}), path)
    return str(path)


def test_listed_files_answer_from_the_list(env):
    app, store, model, tmp = env
    uri = write_parquet(tmp / "list1.parquet", [("/store/a.root", 0.9), ("/store/b.root", 0.7)])
    store.add_placement(SITE, uri, 2, 2 * 10**9, model=(model.name, model.version))
    r = app.test_client().get("/decide", query_string={"site": SITE, "lfn": "/store/b.root"})
    assert r.status_code == 200
    assert r.get_json() == {"store": True, "score": 0.7, "model": "cachemodel:1", "source": "list"}


def test_text_lists_and_file_uris(env):
    app, store, model, tmp = env
    path = tmp / "list.txt"
    path.write_text("# placement list\n/store/x.root\n\n/store/y.root 0.25\n")
    store.add_placement(SITE, path.as_uri(), 2, 1)
    c = app.test_client()
    assert c.get("/decide", query_string={"site": SITE, "lfn": "/store/x.root"}).get_json()["score"] == 1.0
    assert c.get("/decide", query_string={"site": SITE, "lfn": "/store/y.root"}).get_json()["score"] == 0.25


def test_unlisted_files_get_the_models_answer_from_lfn_features(env, built):
    app, store, model, tmp = env
    store.add_placement(SITE, write_parquet(tmp / "l.parquet", [("/store/a.root", 0.9)]), 1, 1,
                        model=(model.name, model.version))
    size = 2.5e9
    got = app.test_client().get("/decide", query_string={"site": SITE, "lfn": MC, "size": size}).get_json()
    # independent recomputation: the features by hand, the TFLite artifact run directly
    row = np.array([[1.0, 1.0, math.log10(size), 0.0]], np.float32)
    p = float(Predictor(artifact(built, "v1", "tflite")).predict(row)[0, 0])
    assert got["source"] == "model" and got["model"] == "cachemodel:1"
    assert got["score"] == pytest.approx(p, rel=1e-6)
    assert got["store"] is (p >= 0.5)


def test_default_answer_when_no_model_or_features_unknown(env):
    app, store, model, tmp = env
    c = app.test_client()
    # no placement list and no default model: the documented default
    r = c.get("/decide", query_string={"site": SITE, "lfn": DATA})
    assert r.get_json() == {"store": False, "score": 0.0, "model": None, "source": "default"}
    # a model is named but size is unknown, so log_size cannot be derived and has no default
    r = c.get("/decide", query_string={"site": SITE, "lfn": DATA, "model": "cachemodel"})
    assert r.get_json()["source"] == "default"
    r = c.get("/decide", query_string={"site": SITE, "lfn": DATA, "model": "cachemodel", "size": "1e9"})
    assert r.get_json()["source"] == "model"


def test_default_model_is_used_without_a_list(env):
    app, store, model, tmp = env
    c = app.test_client()
    assert c.post("/params", json={"name": "cachemodel"}).status_code == 200
    r = c.get("/decide", query_string={"site": SITE, "lfn": MC, "size": 10**9}).get_json()
    assert r["source"] == "model" and r["model"] == "cachemodel:1"


def test_newer_placement_is_loaded_on_refresh(env):
    app, store, model, tmp = env
    c = app.test_client()
    store.add_placement(SITE, write_parquet(tmp / "old.parquet", [("/store/old.root", 0.5)]), 1, 1)
    q = {"site": SITE, "lfn": "/store/new.root"}
    assert c.get("/decide", query_string=q).get_json()["source"] == "default"
    store.add_placement(SITE, write_parquet(tmp / "new.parquet", [("/store/new.root", 0.8)]), 1, 1)
    assert c.get("/decide", query_string=q).get_json()["source"] == "default"   # until the refresh
    changes = service(app).refresh_now()
    assert any(SITE in ch for ch in changes)
    assert c.get("/decide", query_string=q).get_json() == {"store": True, "score": 0.8, "model": None,
                                                           "source": "list"}


def test_unreadable_list_keeps_the_previous_one(env):
    app, store, model, tmp = env
    c = app.test_client()
    store.add_placement(SITE, write_parquet(tmp / "good.parquet", [("/store/g.root", 0.6)]), 1, 1)
    q = {"site": SITE, "lfn": "/store/g.root"}
    assert c.get("/decide", query_string=q).get_json()["source"] == "list"
    store.add_placement(SITE, str(tmp / "missing.parquet"), 1, 1)
    service(app).refresh_now()
    assert c.get("/decide", query_string=q).get_json()["source"] == "list"


@pytest.mark.parametrize("query,status", [
    ({"site": SITE}, 400), ({"lfn": "/store/a.root"}, 400), ({"site": "T9_XX_Nowhere", "lfn": "/a"}, 404),
    ({"site": "../etc", "lfn": "/a"}, 400), ({"site": SITE, "lfn": "/a", "size": "-1"}, 400),
    ({"site": SITE, "lfn": "/a", "size": "nan"}, 400), ({"site": SITE, "lfn": "/a", "size": "big"}, 400),
    ({"site": SITE, "lfn": "/a", "model": "nosuch"}, 404), ({"site": SITE, "lfn": "x" * 5000}, 400),
])
def test_bad_decide_queries(env, query, status):
    r = env[0].test_client().get("/decide", query_string=query)
    assert r.status_code == status and "error" in r.get_json()


def test_placements_route(env):
    app, store, model, tmp = env
    uri = write_parquet(tmp / "p.parquet", [("/store/a.root", 0.2), ("/store/b.root", 0.9)])
    store.add_placement(SITE, uri, 2, 3 * 10**9, model=(model.name, model.version))
    c = app.test_client()
    body = c.get(f"/placements/{SITE}?files=1").get_json()
    assert body["current"]["uri"] == uri and body["current"]["model"] == "cachemodel:1"
    assert body["loaded_files"] == 2 and body["files"] == [{"lfn": "/store/b.root", "score": 0.9}]
    assert len(body["placements"]) == 1
    assert c.get("/placements/T9_XX_Nowhere").status_code == 404
    assert c.get(f"/placements/{SITE}?files=x").status_code == 400


def test_decision_metrics(env):
    app, store, model, tmp = env
    c = app.test_client()
    c.get("/decide", query_string={"site": SITE, "lfn": "/a"})
    text = c.get("/metrics").get_data(as_text=True)
    assert 'smartcache_decisions_total{source="default",store="false"} 1.0' in text
    assert 'route="/decide",status="200"} 1.0' in text


def test_lfn_parsing_and_features():
    info = parse_lfn(MC)
    assert (info.kind, info.tier, info.primary) == ("mc", "MINIAODSIM", "TTToSemiLeptonic_TuneCP5")
    assert info.dataset == "/TTToSemiLeptonic_TuneCP5/RunIISummer20UL18MiniAODv2-106X_upgrade2018_v16-v1/MINIAODSIM"
    d = parse_lfn(DATA)
    assert (d.kind, d.era, d.tier, d.dataset) == ("data", "Run2018D", "AOD", "/SingleMuon/Run2018D-12Nov2019_UL2018-v2/AOD")
    assert parse_lfn("/store/user/x.root").kind == "other"
    names = ["is_mc", "is_data", "tier_aod", "tier_MINIAOD", "size_gb", "k", "tier_code", "site_tier", "log_size"]
    row = feature_row(DATA, names, {"k": 7.0}, 2e9, "T1_IT_CNAF")
    assert row.tolist() == [[0.0, 1.0, 1.0, 0.0, 2.0, 7.0, 3.0, 1.0, pytest.approx(math.log10(2e9))]]
    assert feature_row("/store/user/x.root", ["tier_code"], {}).tolist() == [[0.0]]
    assert feature_row(DATA, ["n_access_1d"], {}) is None
