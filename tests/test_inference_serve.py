"""``smartcache serve`` for real: gunicorn workers on 127.0.0.1, queried from this process."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from inference_support import FEATURES, PROBES, built_models, register

from smartcache.catalog import open_store
from smartcache.inference import modelformat as mf

TOKEN = "serve-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command() -> list[str]:
    from smartcache.submit.cli.group import cli
    if "serve" in cli.commands:
        return [sys.executable, "-m", "smartcache.submit.cli.group"]
    # not yet registered in the main group: the same group with the command added
    return [sys.executable, "-c", "from smartcache.submit.cli.group import cli; from smartcache.submit.cli.serve "
                                  "import serve; cli.add_command(serve); cli()"]


def http(port: int, path: str, body: bytes | None = None, method: str | None = None,
         headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    built = built_models()
    home = tmp_path_factory.mktemp("serve-home")
    (home / "config.toml").write_text(f'[inference]\ntoken = "{TOKEN}"\n')
    store = open_store(f"sqlite:///{home / 'catalog.db'}", migrate=True)
    register(store, built, "v1")
    store.close()
    port = free_port()
    log = open(home / "serve.log", "w")
    env = {"SMARTCACHE_HOME": str(home), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(serve_command() + ["serve", "--host", "127.0.0.1", "--port", str(port),
                                               "--workers", "2"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while True:
        try:
            if http(port, "/healthz")[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"smartcache serve did not start:\n{(home / 'serve.log').read_text()[-3000:]}")
        time.sleep(0.2)
    yield port, built, home
    proc.terminate()            # SIGTERM: gunicorn's graceful stop
    try:
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def test_serve_answers_healthz_and_json(server):
    port, built, home = server
    status, body = http(port, "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    row = json.dumps({"keys": FEATURES, "values": PROBES[0], "model": "cachemodel"}).encode()
    for _ in range(20):   # a new connection each: the workers share them
        status, body = http(port, "/json", row, headers={"Content-Type": "application/json"})
        assert status == 200
        np.testing.assert_allclose(json.loads(body), built["models"]["v1"]["expected"][0], rtol=1e-5)
    # metrics add up over the worker processes
    text = http(port, "/metrics")[1].decode()
    line = next(l for l in text.splitlines()
                if l.startswith("smartcache_http_requests_total") and 'route="/json"' in l and '"200"' in l)
    assert float(line.rsplit(" ", 1)[1]) == 20.0
    assert http(port, "/json", b"{bad")[0] == 400


def test_tfaas_client_session_with_curl(server, tmp_path):
    """Upload a bundle, list, predict, delete: the curl commands of TFaaS's README, unchanged."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    port, built, home = server
    bundle = tmp_path / "models.tar.gz"
    bundle.write_bytes(mf.pack_savedmodel(built["models"]["v2"]["savedmodel_dir"], "tfaasmodel"))
    base = f"http://127.0.0.1:{port}"

    def curl(*args: str) -> tuple[int, str]:
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True,
                             timeout=300, check=True).stdout
        body, _, code = out.rpartition("\n")
        return int(code), body

    code, body = curl("-X", "POST", "-H", "Content-Encoding: gzip", "-H", "content-type: application/octet-stream",
                      "--data-binary", f"@{bundle}", f"{base}/upload")
    assert code == 401, body                      # a token is configured: mutating needs it
    auth = f"Authorization: Bearer {TOKEN}"
    code, body = curl("-X", "POST", "-H", auth, "-H", "Content-Encoding: gzip",
                      "-H", "content-type: application/octet-stream", "--data-binary", f"@{bundle}", f"{base}/upload")
    assert code == 200, body
    assert json.loads(body)["model"] == "tfaasmodel:1"
    code, body = curl(f"{base}/models")
    assert code == 200 and "tfaasmodel" in [m["name"] for m in json.loads(body)]
    inp = tmp_path / "input.json"
    inp.write_text(json.dumps({"keys": FEATURES, "values": PROBES[2], "model": "tfaasmodel"}))
    code, body = curl("-X", "POST", "-H", "Content-type: application/json", f"-d@{inp}", f"{base}/json")
    assert code == 200, body
    np.testing.assert_allclose(json.loads(body), built["models"]["v2"]["expected"][2], rtol=1e-5)
    code, body = curl("-X", "DELETE", "-H", auth, "-F", "model=tfaasmodel", f"{base}/delete")
    assert code == 200, body
    # the other worker drops its cached copy at its next catalog refresh (5 s)
    deadline = time.monotonic() + 20
    while curl("-X", "POST", f"-d@{inp}", f"{base}/json")[0] != 404:
        assert time.monotonic() < deadline, "deleted model still served"
        time.sleep(0.5)
