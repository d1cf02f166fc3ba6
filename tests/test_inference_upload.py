"""``POST /upload``: TFaaS multipart and gzip-bundle uploads, refusals, tar-slip, size limits."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from inference_support import FEATURES, PROBES, TOKEN as TOKEN_VALUE, artifact, built_models, make_app, register, service
from smartcache.catalog.errors import Invalid
from smartcache.inference import modelformat as mf
from smartcache.inference.tarsafe import BundleTooLarge, check_member_name, extract_bundle, extract_stream

TOKEN = {"Authorization": f"Bearer {TOKEN_VALUE}"}


@pytest.fixture(scope="session")
def built():
    return built_models()


@pytest.fixture
def env(tmp_path):
    app, store = make_app(tmp_path, token=TOKEN_VALUE)
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


# -- tar-slip and friends: the extraction itself, member kind by member kind --------------------
# Each case: the members, the refusal reason, and the host paths (relative to the extraction's
# parent, or absolute) where a broken extractor would have put something.
def slip_cases(tag: str) -> dict:
    evil = f"/tmp/smartcache-slip-{tag}"
    return {
        "absolute": ([member("m/", tarfile.DIRTYPE, None), member(f"{evil}-abs.txt")], "absolute path",
                     [f"{evil}-abs.txt"]),
        "dotdot": ([member("m/", tarfile.DIRTYPE, None), member("m/../../escaped.txt")], "escapes",
                   ["escaped.txt", "../escaped.txt"]),
        "dotdot-top": ([member("../escaped-top.txt")], "escapes", ["escaped-top.txt"]),
        "symlink": ([member("m/", tarfile.DIRTYPE, None),
                     member("m/link", tarfile.SYMTYPE, linkname="../../outside"),
                     member("m/link/written.txt")], "links are not allowed", ["outside/written.txt"]),
        "symlink-abs": ([member("m/", tarfile.DIRTYPE, None), member("m/etc", tarfile.SYMTYPE, linkname="/tmp"),
                         member(f"m/etc/smartcache-slip-{tag}-sym.txt")], "links are not allowed",
                        [f"{evil}-sym.txt"]),
        "hardlink": ([member("m/", tarfile.DIRTYPE, None),
                      member("m/saved_model.pb", tarfile.LNKTYPE, linkname="../victim.txt")],
                     "links are not allowed", []),
        "chardev": ([member("m/", tarfile.DIRTYPE, None), member("m/null", tarfile.CHRTYPE)],
                    "only files and folders", []),
        "blockdev": ([member("m/", tarfile.DIRTYPE, None), member("m/disk", tarfile.BLKTYPE)],
                     "only files and folders", []),
        "fifo": ([member("m/", tarfile.DIRTYPE, None), member("m/fifo", tarfile.FIFOTYPE)],
                 "only files and folders", []),
        "backslash": ([member("m\\..\\..\\escaped-bs.txt")], "unsafe path", ["escaped-bs.txt"]),
        "two-tops": ([member("a/saved_model.pb"), member("b/saved_model.pb")], "one top-level folder", []),
        "file-at-top": ([member("saved_model.pb")], "inside one top-level folder", []),
        "bad-top-name": ([member("-rf/saved_model.pb")], "invalid bundle folder", []),
        "duplicate": ([member("m/a"), member("m/a")], "duplicate", []),
    }


CASES = sorted(slip_cases("x"))


@pytest.mark.parametrize("case", CASES)
def test_tar_slip_extraction_refuses_each_member_kind_and_writes_nothing_outside(tmp_path, case):
    members, reason, escapes = slip_cases(tmp_path.name)[case]
    victim = tmp_path / "work" / "victim.txt"
    (tmp_path / "work" / "x").mkdir(parents=True)
    victim.write_text("untouched")
    dest = tmp_path / "work" / "x" / "dest"
    dest.mkdir()
    before = sorted(p for p in tmp_path.rglob("*") if dest not in p.parents)
    with pytest.raises(Invalid, match=reason):
        extract_stream(io.BytesIO(tarball(members)), dest, max_bytes=1 << 20)
    # nothing anywhere outside dest: not beside it, not above it, not at the absolute paths
    assert sorted(p for p in tmp_path.rglob("*") if dest not in p.parents) == before
    for rel in escapes:
        for base in (dest, dest.parent, dest.parent.parent):
            assert not (base / rel).exists() or (base / rel) in before, f"{rel} landed under {base}"
        if rel.startswith("/"):
            assert not Path(rel).exists(), f"{rel} landed"
    assert victim.read_text() == "untouched"
    # and nothing unsafe inside dest either: no links, no special files
    assert all(p.is_dir() or (p.is_file() and not p.is_symlink()) for p in dest.rglob("*"))


@pytest.mark.parametrize("case", ["absolute", "dotdot", "symlink", "hardlink", "chardev", "fifo"])
def test_tar_slip_uploads_are_refused_with_the_reason(env, tmp_path, case):
    app, c, store = env
    members, reason, _ = slip_cases(tmp_path.name)[case]
    r = c.post("/upload", data=tarball(members), headers={**TOKEN, "Content-Encoding": "gzip"})
    assert r.status_code == 400, r.data
    assert reason in r.get_json()["error"]
    assert store.list_models() == []


def gzip_bomb(name: str, declared: int, members: int = 1) -> bytes:
    """``members`` zero-filled files of ``declared`` bytes each, as concatenated gzip members (one
    per MiB of zeros): a 32 GiB tarball is ~32 MB and built in moments."""
    zeros = gzip.compress(b"\0" * (1 << 20), 9)
    out = io.BytesIO()
    for i in range(members):
        info = tarfile.TarInfo(f"{name}/file{i}" if members > 1 else name)
        info.size = declared
        out.write(gzip.compress(info.tobuf(tarfile.GNU_FORMAT), 9))
        out.write(zeros * (declared >> 20))
    return out.getvalue()


class Reader(io.RawIOBase):
    """Counts what the extractor reads of the upload."""

    def __init__(self, data: bytes):
        self.src, self.n = io.BytesIO(data), 0

    def readable(self):
        return True

    def readinto(self, b):
        data = self.src.read(len(b))
        b[:len(data)] = data
        self.n += len(data)
        return len(data)


def refused_after(data: bytes, dest: Path, match: str, **budget) -> int:
    """Extract ``data`` expecting a BundleTooLarge; returns how many upload bytes were read."""
    dest.mkdir()
    reader = Reader(data)
    with pytest.raises(BundleTooLarge, match=match):
        extract_stream(io.BufferedReader(reader), dest, **budget)
    return reader.n


def test_decompression_bombs_stop_at_the_first_overrun(tmp_path):
    # the bomb: ~32 MB inflating to 32 GiB. Refused at the member's header.
    bomb = gzip_bomb("m/variables.data", 32 << 30)
    assert 25e6 < len(bomb) < 40e6
    assert refused_after(bomb, tmp_path / "a", "more than 1073741824 bytes", max_bytes=1 << 30) < 2 << 20
    # members each within the byte budget: the compression-ratio budget stops them early
    many = gzip_bomb("m", 256 << 20, members=8)
    assert refused_after(many, tmp_path / "b", "inflates more than", max_bytes=4 << 30) < 2 << 20
    # the member budget
    files = tarball([member("m/", tarfile.DIRTYPE, None)] + [member(f"m/f{i}") for i in range(50)])
    refused_after(files, tmp_path / "c", "members", max_bytes=1 << 20, max_members=20)


def test_decompression_bomb_upload_is_413(tmp_path):
    app, store = make_app(tmp_path, max_upload_bytes=64 << 20)
    bomb = gzip_bomb("cachemodel/variables/variables.data-00000-of-00001", 32 << 30)
    r = app.test_client().post("/upload", data=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "more than" in r.get_json()["error"]
    assert store.list_models() == []
    store.close()


def test_extract_bundle_writes_only_below_dest(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    data = tarball([member("m/", tarfile.DIRTYPE, None), member("m/saved_model.pb", data=b"pb"),
                    member("m/variables/v.index", data=b"ix")])
    assert extract_bundle(data, dest, max_bytes=100) == "m"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == \
        ["m", "m/saved_model.pb", "m/variables", "m/variables/v.index"]
    (tmp_path / "again").mkdir()
    with pytest.raises(BundleTooLarge):
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


def test_other_workers_see_uploads_and_deletes_at_once(tmp_path, built):
    """Two apps on one catalog and one home stand for two gunicorn workers; no refresh runs."""
    app_a, store_a = make_app(tmp_path)
    app_b = make_app(tmp_path)[0]
    register(store_a, built, "v1")
    a, b = app_a.test_client(), app_b.test_client()
    first = predict(b, PROBES[0])
    assert predict(a, PROBES[0]) == first
    tflite = artifact(built, "v2", "tflite")
    assert a.post("/upload", data=form(tflite, params_file())).status_code == 200
    assert predict(b, PROBES[0]) == predict(a, PROBES[0]) != first       # b serves version 2 at once
    assert a.delete("/delete/cachemodel").status_code == 200
    r = b.post("/json", data=json.dumps({"values": PROBES[0], "model": "cachemodel"}))
    assert r.status_code == 404                                         # deleted for b too
    # b remembers the miss; a new upload on a is still served by b at once
    assert a.post("/upload", data=form(tflite, params_file())).status_code == 200
    assert predict(b, PROBES[0]) == predict(a, PROBES[0])
    store_a.close()
