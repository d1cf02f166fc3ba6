"""``POST /upload``: TFaaS multipart and gzip-bundle uploads, refusals, tar-slip, size limits."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import numpy as np
import pytest

from inference_support import FEATURES, PROBES, artifact, built_models, make_app, register, service
from smartcache.catalog.errors import Invalid
from smartcache.inference import modelformat as mf
from smartcache.inference.tarsafe import check_member_name, extract_bundle

TOKEN = {"Authorization": "Bearer tok"}


@pytest.fixture(scope="session")
def built():
    return built_models()


@pytest.fixture
def env(tmp_path):
    app, store = make_app(tmp_path, token="tok")
    yield app, app.test_client(), store
    store.close()


def predict(client, row, model="cachemodel"):
    r = client.post("/json", data=json.dumps({"values": row, "model": model}))
    assert r.status_code == 200, r.data
    return r.get_json()


def params_file(**kw) -> bytes:
    return json.dumps({"name": "cachemodel", "inputNode": "features", "outputNode": "output_0",
                       "description": "uploaded", **kw}).encode()


def form(model: bytes, params: bytes, name="cachemodel", labels=b"reuse\n"):
    return {"name": name, "params": (io.BytesIO(params), "params.json"),
            "model": (io.BytesIO(model), "model.bin"), "labels": (io.BytesIO(labels), "labels.txt")}


def tarball(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind=tarfile.REGTYPE, data: bytes | None = b"x", linkname: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, (data if kind == tarfile.REGTYPE else None)


# -- the TFaaS upload shapes (the child process converts with TensorFlow: slow) -----------------
@pytest.mark.slow
def test_multipart_savedmodel_then_bundle_swaps_versions(env, built):
    app, c, store = env
    params = params_file(input_features=FEATURES)
    r = c.post("/upload", data=form(artifact(built, "v1", "savedmodel"), params), headers=TOKEN)
    assert r.status_code == 200, r.data
    assert r.get_json()["model"] == "cachemodel:1" and r.get_json()["input_features"] == FEATURES
    np.testing.assert_allclose(predict(c, PROBES[0]), built["models"]["v1"]["expected"][0], rtol=1e-5)
    rec = store.get_model("cachemodel")
    assert {a.kind for a in rec.artifacts} == {"tflite", "savedmodel", "params", "labels"}
    assert rec.stage == "production" and rec.params["tfaas"]["description"] == "uploaded"
    # the 2023 way: the body is the gzip tarball; served at once, requests need no refresh
    r = c.post("/upload", data=artifact(built, "v2", "savedmodel"), headers={**TOKEN, "Content-Encoding": "gzip",
                                                                            "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.data
    assert r.get_json()["model"] == "cachemodel:2"
    assert r.get_json()["input_features"] == FEATURES            # kept from version 1
    np.testing.assert_allclose(predict(c, PROBES[0]), built["models"]["v2"]["expected"][0], rtol=1e-5)
    assert store.get_model("cachemodel", 1).stage == "archived"


@pytest.mark.slow
def test_corrupt_savedmodel_is_refused_and_the_served_model_untouched(env, built):
    app, c, store = env
    register(store, built, "v1")
    before = predict(c, PROBES[0])
    bad = tarball([member("cachemodel/", tarfile.DIRTYPE), member("cachemodel/saved_model.pb", data=b"\x08garbage"),
                   member("cachemodel/variables/variables.index", data=b"nonsense")])
    r = c.post("/upload", data=bad, headers={**TOKEN, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "SavedModel" in r.get_json()["error"]
    assert [m.version for m in store.list_models("cachemodel")] == [1]
    assert predict(c, PROBES[0]) == before
    assert 'smartcache_uploads_total{outcome="refused"} 1.0' in c.get("/metrics").get_data(as_text=True)


@pytest.mark.slow
def test_frozen_graph_upload_tfaas_2019(env, built):
    app, c, store = env
    frozen = (built_models_dir(built) / "frozen.pb").read_bytes()
    params = json.dumps({"name": "tf1", "model": "model.pb", "labels": "labels.txt",
                         "inputNode": "input", "outputNode": "output"}).encode()
    r = c.post("/upload", data=form(frozen, params, name="tf1"), headers=TOKEN)
    assert r.status_code == 200, r.data
    x = np.array([1.0, 2.0, 3.0, 4.0])
    want = 1 / (1 + np.exp(-(x @ np.array([0.5, -0.25, 0.1, 0.2]))))
    assert predict(c, x.tolist(), "tf1")[0] == pytest.approx(want, rel=1e-5)
    # without node names a frozen graph cannot be converted
    r = c.post("/upload", data=form(frozen, json.dumps({"name": "tf1b"}).encode(), name="tf1b"), headers=TOKEN)
    assert r.status_code == 400 and "inputNode" in r.get_json()["error"]


def built_models_dir(built):
    from pathlib import Path
    return Path(built["dir"])


# -- fast refusals (no TensorFlow needed) -------------------------------------------------------
def test_tflite_upload_and_mismatched_width_is_refused(env, built):
    app, c, store = env
    r = c.post("/upload", data=form(artifact(built, "v1", "tflite"), params_file(input_features=FEATURES)),
               headers=TOKEN)
    assert r.status_code == 200, r.data
    before = predict(c, PROBES[0])
    # a 3-input model under a name whose clients send 4 features
    r = c.post("/upload", data=form(artifact(built, "w3", "tflite"), params_file()), headers=TOKEN)
    assert r.status_code == 400 and "mismatched" in r.get_json()["error"]
    r = c.post("/upload", data=form(artifact(built, "w3", "tflite"), params_file(input_features=FEATURES)),
               headers=TOKEN)
    assert r.status_code == 400 and "mismatched" in r.get_json()["error"]
    assert [m.version for m in store.list_models("cachemodel")] == [1]
    assert predict(c, PROBES[0]) == before
    # declaring the new features explicitly is how a model changes width
    r = c.post("/upload", data=form(artifact(built, "w3", "tflite"), params_file(input_features=FEATURES[:3])),
               headers=TOKEN)
    assert r.status_code == 200 and r.get_json()["version"] == 2


@pytest.mark.parametrize("model,params,name,message", [
    (b"\x1c\x00\x00\x00TFL3" + b"garbage-not-a-flatbuffer" * 4, None, "cachemodel", "TFLite"),
    (b"PK\x03\x04keras", None, "cachemodel", "Keras"),
    (b"", None, "cachemodel", "empty"),
    (None, b"{not json", "cachemodel", "JSON"),
    (None, json.dumps({"name": "other"}).encode(), "cachemodel", "mismatch"),
    (None, json.dumps({"name": "cachemodel", "normalization": {"mean": [0], "std": [1]}}).encode(),
     "cachemodel", "normalization"),
    (None, json.dumps({"name": "cachemodel", "threshold": 7}).encode(), "cachemodel", "threshold"),
    (None, None, "../../etc", "invalid model name"),
])
def test_bad_multipart_uploads(env, built, model, params, name, message):
    app, c, store = env
    if model is None:
        model = artifact(built, "v1", "tflite")
    r = c.post("/upload", data=form(model, params or params_file(name=name), name=name), headers=TOKEN)
    assert r.status_code == 400, r.data
    assert message in r.get_json()["error"]
    assert store.list_models() == []


def test_missing_fields_and_wrong_body(env, built):
    app, c, store = env
    # params given as a text field (curl -F 'params=<params.json') are read too
    r = c.post("/upload", data={"name": "cachemodel", "params": json.dumps({"name": "other"}),
                                "model": (io.BytesIO(artifact(built, "v1", "tflite")), "m")}, headers=TOKEN)
    assert r.status_code == 400 and "mismatch" in r.get_json()["error"]
    assert c.post("/upload", data={"name": "x"}, headers=TOKEN).status_code == 400
    assert c.post("/upload", data={"model": (io.BytesIO(b"x"), "m")}, headers=TOKEN).status_code == 400
    r = c.post("/upload", data=b"plain text", headers=TOKEN, content_type="text/plain")
    assert r.status_code == 400 and "multipart" in r.get_json()["error"]
    r = c.post("/upload", data=b"not gzip", headers={**TOKEN, "Content-Encoding": "gzip"})
    assert r.status_code == 400


# -- tar-slip and friends -----------------------------------------------------------------------
SLIP = {
    "dotdot": [member("cachemodel/"), member("cachemodel/../../evil.txt")],
    "absolute": [member("/tmp/evil-smartcache.txt")],
    "symlink": [member("cachemodel/saved_model.pb", tarfile.SYMTYPE, linkname="/etc/passwd")],
    "hardlink": [member("cachemodel/saved_model.pb", tarfile.LNKTYPE, linkname="/etc/passwd")],
    "chardev": [member("cachemodel/dev", tarfile.CHRTYPE)],
    "fifo": [member("cachemodel/fifo", tarfile.FIFOTYPE)],
    "two-tops": [member("a/saved_model.pb"), member("b/saved_model.pb")],
    "file-at-top": [member("saved_model.pb")],
    "backslash": [member("cachemodel\\..\\evil")],
    "bad-top-name": [member("-rf/saved_model.pb")],
}


@pytest.mark.parametrize("case", sorted(SLIP))
def test_tar_slip_bundles_are_refused(env, tmp_path, case):
    app, c, store = env
    fixed = [(m, d) for m, d in SLIP[case]]
    for m, _ in fixed:
        if m.name.endswith("/") and m.type == tarfile.REGTYPE:
            m.type = tarfile.DIRTYPE
    fixed = [(m, None if m.type == tarfile.DIRTYPE else d) for m, d in fixed]
    r = c.post("/upload", data=tarball(fixed), headers={**TOKEN, "Content-Encoding": "gzip"})
    assert r.status_code == 400, r.data
    assert "error" in r.get_json()
    assert not (tmp_path.parent / "evil.txt").exists()
    assert store.list_models() == []


def test_decompression_bomb_is_refused(tmp_path):
    app, store = make_app(tmp_path, max_upload_bytes=200_000)
    bomb = tarball([member("cachemodel/", tarfile.DIRTYPE, None), member("cachemodel/saved_model.pb", data=b"\0" * 2_000_000)])
    assert len(bomb) < 200_000
    r = app.test_client().post("/upload", data=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and "more than" in r.get_json()["error"]
    store.close()


def test_extract_bundle_writes_only_below_dest(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    data = tarball([member("m/", tarfile.DIRTYPE, None), member("m/saved_model.pb", data=b"pb"),
                    member("m/variables/v.index", data=b"ix")])
    assert extract_bundle(data, dest, max_bytes=100) == "m"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == \
        ["m", "m/saved_model.pb", "m/variables", "m/variables/v.index"]
    with pytest.raises(Invalid):
        extract_bundle(data, tmp_path / "again", max_bytes=3)
    for bad in ("", "/x", "a/../../b", "..", "a\x00b", "C:/x"):
        with pytest.raises(Invalid):
            check_member_name(bad)


def test_pack_savedmodel_is_reproducible_and_round_trips(tmp_path, built):
    src = built_models_dir(built) / "work-v1" / "cachemodel"
    a, b = mf.pack_savedmodel(src, "cachemodel"), mf.pack_savedmodel(src, "cachemodel")
    assert a == b and mf.is_gzip(a)
    name, model_dir = mf.unpack_savedmodel(a, tmp_path)
    assert name == "cachemodel" and (model_dir / "saved_model.pb").read_bytes() == (src / "saved_model.pb").read_bytes()
    with pytest.raises(Invalid):
        mf.unpack_savedmodel(a, tmp_path / "x", name="other")


def test_params_camel_and_snake_case():
    p = mf.parse_params(b'{"name": "m", "input_node": "in", "output_node": "out", "op": "x", "extra": 1}')
    assert p == {"name": "m", "inputNode": "in", "outputNode": "out", "op": "x", "extra": 1}
    assert mf.parse_params({"inputNode": "a", "input_node": "b"})["inputNode"] == "a"
    for bad in (b"[]", b'{"name": 5}', b'{"name": "../x"}', b'{"options": 3}', b"\xff"):
        with pytest.raises(Invalid):
            mf.parse_params(bad)


def test_swapped_in_upload_is_seen_by_other_workers_on_refresh(tmp_path, built):
    """Two apps on one catalog stand for two gunicorn workers."""
    app_a, store_a = make_app(tmp_path)
    app_b = make_app(tmp_path)[0]
    register(store_a, built, "v1")
    a, b = app_a.test_client(), app_b.test_client()
    assert predict(b, PROBES[0]) == predict(a, PROBES[0])
    params = params_file()
    assert a.post("/upload", data=form(artifact(built, "v2", "tflite"), params)).status_code == 200
    assert predict(a, PROBES[0]) != predict(b, PROBES[0])
    service(app_b).refresh_now()
    assert predict(a, PROBES[0]) == predict(b, PROBES[0])
    store_a.close()
