"""Uploaded models: converted to the model's own numbers, and their code confined to a sandbox.

The models are saved the way TFaaS users save them (``tf.saved_model.save``, a TF1 builder,
a frozen graph), and hostile ones whose loading writes or reads host files (a TF1 ``main_op``,
a TF2 resource initializer). Conversions run for real, in bubblewrap.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np
import pytest

from inference_support import (PROBES, TOKEN, artifact, built_models, bundle, make_app, register, service,
                               tfaas_models)
from smartcache.catalog.errors import Invalid
from smartcache.inference import tfconvert
from smartcache.inference.convert import convert_in_child
from smartcache.inference.runtime import Predictor
from smartcache.inference.sandbox import IN, OUT, Limits, Sandbox, unavailable_reason

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD = ["functional", "sequential", "subclassed", "module", "tf1"]
HOSTILE = ["main_op_outside", "main_op_pth", "main_op_config", "resource_outside", "resource_pth"]
TARGETS_DIR = Path(sysconfig.get_paths()["purelib"])


@pytest.fixture(scope="session")
def targets(tmp_path_factory):
    """Host paths the hostile models aim at: a file beside the tests, a .pth in the venv, a config."""
    d = tmp_path_factory.mktemp("targets")
    config = d / "home" / "config.toml"
    config.parent.mkdir()
    config.write_text(f'[inference]\ntoken = "{TOKEN}"\n')
    return {"outside": str(d / "outside" / "written.txt"), "config": str(config),
            "pth": str(TARGETS_DIR / "zz_smartcache_sandbox_test.pth")}


@pytest.fixture(scope="session")
def tfaas(targets):
    if unavailable_reason():
        pytest.fail(f"no sandbox on this machine ({unavailable_reason()}): tests/run.sh installs bubblewrap")
    return tfaas_models(targets)


@pytest.fixture
def env(tmp_path):
    app, store = make_app(tmp_path, token=TOKEN)
    register(store, built_models(), "v1")
    yield app, app.test_client(), store
    store.close()


def predict(client, rows, model="cachemodel"):
    r = client.post("/json", data=json.dumps({"values": rows, "model": model}))
    assert r.status_code == 200, r.data
    return r.get_json()


def upload_bundle(client, folder: Path, name: str):
    return client.post("/upload", data=bundle(folder, name),
                       headers={**AUTH, "Content-Encoding": "gzip", "Content-Type": "application/octet-stream"})


def assert_nothing_landed(targets) -> None:
    landed = [p for k, p in targets.items() if k != "config" and Path(p).exists()]
    for p in landed:
        Path(p).unlink()     # do not leave a hostile model's file behind, even when failing
    assert landed == [], f"an uploaded model wrote outside the sandbox: {landed}"


# -- correct conversion --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", GOOD)
def test_tfaas_savedmodel_serves_the_models_own_predictions(env, tfaas, kind):
    app, c, store = env
    r = upload_bundle(c, Path(tfaas["dir"]) / kind, kind)
    assert r.status_code == 200, r.data
    conversion = r.get_json()["conversion"]
    assert conversion["max_abs_diff"] <= tfconvert.TOLERANCE and conversion["sandbox"] == "bubblewrap"
    np.testing.assert_allclose(predict(c, PROBES, kind), tfaas["good"][kind]["expected"], atol=1e-4, rtol=0)
    # the measured difference is kept with the version
    assert store.get_model(kind).params["conversion"] == conversion


@pytest.mark.slow
def test_frozen_graph_with_variables(env, tfaas):
    app, c, store = env
    good = tfaas["good"]["frozen"]
    params = json.dumps({"name": "frozen", "inputNode": good["inputNode"], "outputNode": good["outputNode"]})
    model = (Path(tfaas["dir"]) / "frozen.pb").read_bytes()
    r = c.post("/upload", headers=AUTH, data={"name": "frozen", "params": (io.BytesIO(params.encode()), "params.json"),
                                              "model": (io.BytesIO(model), "model.pb")})
    assert r.status_code == 200, r.data
    assert r.get_json()["conversion"]["max_abs_diff"] <= tfconvert.TOLERANCE
    np.testing.assert_allclose(predict(c, PROBES, "frozen"), good["expected"], atol=1e-4, rtol=0)


def test_a_conversion_that_differs_is_refused_with_the_measured_difference():
    """The check itself, on a real TFLite model against a reference off by 0.01."""
    tflite = artifact(built_models(), "v1", "tflite")
    pred = Predictor(tflite)

    def reference(x):
        return pred.predict(x) + 0.01
    with pytest.raises(Invalid, match=r"differs from the original by up to 0\.01"):
        tfconvert._best([("exact", lambda: tflite)], reference)
    got = tfconvert._best([("broken", lambda: b"not tflite"), ("exact", lambda: tflite)], pred.predict)
    assert got.method == "exact" and got.max_abs_diff == 0.0 and got.probe_rows == tfconvert.PROBE_ROWS


# -- hostile models --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_model_changes_nothing_on_the_host(env, tfaas, targets, kind):
    app, c, store = env
    before = predict(c, PROBES)
    assert_nothing_landed(targets)
    r = upload_bundle(c, Path(tfaas["dir"]) / kind, "cachemodel")
    assert_nothing_landed(targets)
    body = r.get_data(as_text=True)
    assert TOKEN not in body
    if kind == "main_op_config":
        # its main_op asserts on config.toml's content: the box has no such file to read
        assert r.status_code == 400 and "NotFoundError" in r.get_json()["error"]
    if r.status_code != 200:
        assert r.status_code == 400 and [m.version for m in store.list_models("cachemodel")] == [1]
        assert predict(c, PROBES) == before


@pytest.mark.slow
def test_hostile_models_are_real_when_unconfined(tfaas, targets, tmp_path):
    """The control: without the sandbox (the operator's opt-out) the same models do reach the host."""
    try:
        convert_in_child("savedmodel", Path(tfaas["dir"]) / "main_op_outside", sandbox=Sandbox("off"))
        assert Path(targets["outside"]).read_text() == "written by main_op\n"
        with pytest.raises(Invalid, match="InvalidArgumentError"):   # it read the file, then asserted
            convert_in_child("savedmodel", Path(tfaas["dir"]) / "main_op_config", sandbox=Sandbox("off"))
    finally:
        Path(targets["outside"]).unlink(missing_ok=True)


# -- the sandbox itself (no TensorFlow) ------------------------------------------------------------
PROBE = r"""
import json, os, resource, socket, sys
out = {"env": sorted(os.environ), "tmp": os.listdir("/tmp")}
def attempt(name, fn):
    try:
        out[name] = ["ok", fn()]
    except OSError as e:
        out[name] = ["error", e.errno]
attempt("connect", lambda: socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close())
attempt("read_config", lambda: open(sys.argv[2]).read())
attempt("list_home", lambda: os.listdir(sys.argv[3]))
attempt("write_venv", lambda: open(os.path.join(sys.argv[4], "zz_sandbox_probe.pth"), "w").write("#"))
attempt("write_in", lambda: open(sys.argv[5] + "/x", "w").write("x"))
attempt("write_out", lambda: open(sys.argv[6] + "/x", "w").write("x"))
attempt("write_tmp", lambda: open("/tmp/smartcache-sandbox-probe", "w").write("x"))
out["limits"] = [resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU,
                                                     resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE)]
print(json.dumps(out))
"""


def test_sandbox_has_no_network_home_secrets_or_writable_system(tmp_path, targets, monkeypatch):
    if unavailable_reason():
        pytest.fail(f"no sandbox on this machine: {unavailable_reason()}")
    monkeypatch.setenv("SMARTCACHE_TOKEN", TOKEN)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    accepted = []
    threading.Thread(target=lambda: _accept(listener, accepted), daemon=True).start()
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    home = Path(targets["config"]).parent
    limits = Limits(address_space=3 << 30, cpu_seconds=30, file_size=1 << 20, open_files=64)

    def argv(inside: str, outside: str) -> list[str]:
        return [sys.executable, "-I", "-c", PROBE, str(listener.getsockname()[1]), targets["config"], str(home),
                str(TARGETS_DIR), inside, outside]
    cmd, env = Sandbox().command(argv, in_dir, out_dir, limits)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    listener.close()
    assert got["connect"][0] == "error" and accepted == []
    assert got["read_config"][0] == "error" and got["list_home"][0] == "error"
    assert got["write_venv"][0] == "error" and got["write_in"][0] == "error"
    assert got["write_out"][0] == "ok" and (out_dir / "x").read_text() == "x"
    assert got["write_tmp"][0] == "ok" and not Path("/tmp/smartcache-sandbox-probe").exists()
    assert not (TARGETS_DIR / "zz_sandbox_probe.pth").exists()
    assert got["tmp"] == [] and not any(k.startswith("SMARTCACHE") for k in got["env"])
    assert got["limits"] == [limits.address_space, limits.cpu_seconds, limits.file_size, limits.open_files]
    assert IN != OUT


@pytest.mark.parametrize("code,limits,expect", [
    ("while True: pass", Limits(cpu_seconds=1), "killed"),
    ("b = bytearray(3 << 30)", Limits(address_space=1 << 30), "MemoryError"),
    ("open('/out/big', 'wb').write(b'x' * (8 << 20))", Limits(file_size=1 << 20), "File too large"),
    ("import os; fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(100)]", Limits(open_files=32),
     "Too many open files"),
])
def test_sandbox_rlimits_stop_runaway_children(tmp_path, code, limits, expect):
    if unavailable_reason():
        pytest.fail(f"no sandbox on this machine: {unavailable_reason()}")
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    cmd, env = Sandbox().command(lambda i, o: [sys.executable, "-I", "-c", code], tmp_path / "in",
                                 tmp_path / "out", limits)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if expect == "killed":      # SIGXCPU: bwrap reports the child's death as 128 + signal
        assert proc.returncode > 128 or proc.returncode < 0, (proc.returncode, proc.stderr)
    else:
        assert proc.returncode == 1 and expect in proc.stderr, proc.stderr


def _accept(listener: socket.socket, accepted: list) -> None:
    while True:
        try:
            accepted.append(listener.accept())
        except socket.timeout:
            continue
        except OSError:
            return


# -- no sandbox: refused unless the operator opts out ----------------------------------------------
@pytest.fixture
def no_bwrap(tmp_path, monkeypatch):
    """A PATH with prlimit but no bwrap: a machine where no sandbox can be made."""
    import shutil
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "prlimit").symlink_to(shutil.which("prlimit"))
    monkeypatch.setenv("PATH", str(bin_dir))
    unavailable_reason.cache_clear()
    yield
    unavailable_reason.cache_clear()


def test_without_a_sandbox_uploads_are_refused_unless_opted_out(tmp_path, no_bwrap):
    tflite = artifact(built_models(), "v1", "tflite")

    def send(app):
        return app.test_client().post("/upload", headers=AUTH, data={
            "name": "m", "params": (io.BytesIO(b'{"name": "m"}'), "params.json"), "model": (io.BytesIO(tflite), "m")})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    app, store = make_app(tmp_path / "a", token=TOKEN)
    r = send(app)
    assert r.status_code == 503 and "bubblewrap" in r.get_json()["error"] and store.list_models() == []
    assert app.test_client().get("/status").get_json()["sandbox"].startswith("unavailable")
    store.close()
    app, store = make_app(tmp_path / "b", token=TOKEN, sandbox="off")
    r = send(app)
    assert r.status_code == 200, r.data
    assert r.get_json()["conversion"]["sandbox"].startswith("off")
    assert service(app).sandbox.describe().startswith("off")
    store.close()
