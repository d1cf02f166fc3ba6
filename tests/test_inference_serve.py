"""``smartcache serve`` for real: gunicorn workers on 127.0.0.1, queried from this process."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path

import numpy as np
import pytest
from inference_support import FEATURES, PROBES, TOKEN, artifact, built_models, register

from smartcache.catalog import open_store
from smartcache.inference import modelformat as mf

AUTH = {"Authorization": f"Bearer {TOKEN}"}


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


def start_serve(home: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """``smartcache serve`` on a free port; returns once it answers /healthz (or has exited)."""
    port = free_port()
    log = open(home / "serve.log", "w")
    env = {"SMARTCACHE_HOME": str(home), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(serve_command() + ["serve", "--host", "127.0.0.1", "--port", str(port),
                                               "--workers", "2", *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + 90
    while proc.poll() is None:
        try:
            if http(port, "/healthz")[0] == 200:
                return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"smartcache serve did not start:\n{(home / 'serve.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return proc, port


def stop_serve(proc: subprocess.Popen) -> None:
    proc.terminate()            # SIGTERM: gunicorn's graceful stop
    try:
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    built = built_models()
    home = tmp_path_factory.mktemp("serve-home")
    (home / "config.toml").write_text(f'[inference]\ntoken = "{TOKEN}"\n')
    store = open_store(f"sqlite:///{home / 'catalog.db'}", migrate=True)
    register(store, built, "v1", feature_defaults={"n_access_7d": 0.0})
    store.add_site("T2_X", 10**12)
    store.close()
    proc, port = start_serve(home)
    yield port, built, home
    stop_serve(proc)


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
        if os.environ.get("CI"):
            pytest.fail("CI must provide curl (tests/run.sh installs it)")
        pytest.skip("curl is not installed (apt-get install curl)")
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
    for _ in range(10):   # both workers have it loaded (each curl is a new connection)
        assert curl("-X", "POST", f"-d@{inp}", f"{base}/json")[0] == 200
    code, body = curl("-X", "DELETE", "-H", auth, "-F", "model=tfaasmodel", f"{base}/delete")
    assert code == 200, body
    # read-your-writes: the very next requests, whichever worker takes them, see the delete
    for _ in range(10):
        assert curl("-X", "POST", f"-d@{inp}", f"{base}/json")[0] == 404


# -- limits and errors under gunicorn: every error is JSON --------------------------------------
def raw(port: int, data: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes; returns (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        resp = HTTPResponse(sock)
        resp.begin()
        return resp.status, dict(resp.getheaders()), resp.read()


def test_gunicorn_errors_are_json_and_max_lfn_fits(server):
    port, built, home = server
    lfn = "/store/mc/" + "a" * (4096 - len("/store/mc/"))
    status, body = http(port, f"/decide?site=T2_X&lfn={lfn}&size=2000000000&model=cachemodel")
    assert status == 200 and json.loads(body)["source"] in ("model", "default"), body   # MAX_LFN passes
    status, body = http(port, f"/decide?site=T2_X&lfn={lfn}b")
    assert status == 400 and "lfn longer than 4096" in json.loads(body)["error"]
    status, headers, body = raw(port, b"GET /decide?lfn=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and headers["Content-Type"] == "application/json" and "error" in json.loads(body)
    status, headers, body = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n")
    assert status == 431 and "error" in json.loads(body)
    status, headers, body = raw(port, b"BAD\x01 / HTTP/1.1\r\n\r\n")
    assert status == 400 and "error" in json.loads(body)


def chunked_post(port: int, path: str, head: bytes, total: int, headers: dict) -> tuple[int, bytes, float]:
    """POST ``head`` then spaces as a chunked body of ``total`` bytes; stops when the server answers."""
    conn = HTTPConnection("127.0.0.1", port, timeout=120)
    conn.putrequest("POST", path)
    for k, v in {**headers, "Transfer-Encoding": "chunked"}.items():
        conn.putheader(k, v)
    conn.endheaders()
    t0, sent, chunk = time.monotonic(), 0, b" " * (1 << 20)
    try:
        for piece in [head] * bool(head) + [chunk] * (total // len(chunk)):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass                     # the server answered and closed while we were still sending
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, time.monotonic() - t0


def test_chunked_bodies_are_413_and_memory_stays_bounded(server):
    port, built, home = server
    status, body, _ = chunked_post(port, "/json", b"", 64 << 20, {"Content-Type": "application/json"})
    assert status == 413 and "larger than" in json.loads(body)["error"]
    status, body, _ = chunked_post(port, "/upload", b"\x1f\x8b", 300 << 20, {**AUTH, "Content-Encoding": "gzip"})
    assert status in (400, 413) and "error" in json.loads(body)
    rss = json.loads(http(port, "/status")[1])["Memory"]["rss_bytes"]
    assert rss < 1 << 30


def test_non_finite_output_and_bad_version_are_json(server):
    port, built, home = server
    status, body = http(port, "/json", json.dumps({"values": [3e38] * 4, "model": "cachemodel"}).encode())
    assert status == 422 and "non-finite" in json.loads(body)["error"]
    status, body = http(port, "/delete/cachemodel?version=99999999999999999999999", method="DELETE", headers=AUTH)
    assert status == 400 and "version" in json.loads(body)["error"]


def test_decompression_bomb_is_413(server):
    from test_inference_upload import gzip_bomb
    port, built, home = server
    bomb = gzip_bomb("cachemodel/variables/variables.data-00000-of-00001", 32 << 30)
    t0 = time.monotonic()
    status, body = http(port, "/upload", bomb, headers={**AUTH, "Content-Encoding": "gzip"})
    elapsed = time.monotonic() - t0
    assert status == 413 and "more than" in json.loads(body)["error"]
    print(f"bomb of {len(bomb) / 1e6:.1f} MB inflating to 32 GiB refused in {elapsed:.2f} s")


# -- startup: auth fails closed, files are private -----------------------------------------------
@pytest.mark.parametrize("config,reason", [("", "no inference token"), ('token = ""', "no inference token"),
                                           ('token = "short"', "shorter than 16"),
                                           ("token = 12345", "must be a string")])
def test_serve_refuses_to_start_without_a_usable_token(tmp_path, config, reason):
    (tmp_path / "config.toml").write_text(f"[inference]\n{config}\n")
    proc, port = start_serve(tmp_path)
    assert proc.wait(timeout=60) != 0
    log = (tmp_path / "serve.log").read_text()
    assert reason in log and "Traceback" not in log, log


def test_serve_no_auth_says_so(tmp_path):
    proc, port = start_serve(tmp_path, "--no-auth")
    try:
        status = json.loads(http(port, "/status")[1])
        assert status["auth"] == "disabled (--no-auth)" and status["sandbox"] == "bubblewrap"
        assert "authentication DISABLED" in (tmp_path / "serve.log").read_text()
        assert http(port, "/delete/nosuch", method="DELETE")[0] == 404       # open, as asked
    finally:
        stop_serve(proc)


def test_init_creates_home_config_and_catalog_private(tmp_path):
    home = tmp_path / "fresh"
    old = os.umask(0o022)
    try:
        proc = subprocess.run(serve_command() + ["--home", str(home), "init"], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "SMARTCACHE_HOME": str(home)})
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "config.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "catalog.db").stat().st_mode) == 0o600
    from smartcache.catalog.config import load_config
    assert load_config(home=home).inference.token_problem() is None


# -- the soak, short: uploads and deletes under full load, nothing fails -------------------------
def test_uploads_and_deletes_under_load_fail_no_request(server):
    port, built, home = server
    here = Path(__file__).resolve().parent.parent / "benchmarks" / "loadgen.py"
    row = json.dumps({"keys": FEATURES, "values": PROBES[0], "model": "cachemodel"}).encode()
    body_file = home / "soak-row.json"
    body_file.write_bytes(row)
    loads = [subprocess.Popen([sys.executable, str(here), "--port", str(port), "--path", path, "--method", method,
                               "--concurrency", "8", "--requests", "1000000", "--max-seconds", "20",
                               *(["--body", str(body_file)] if method == "POST" else [])],
                              stdout=subprocess.PIPE, text=True)
             for path, method in (("/json", "POST"), ("/decide?site=T2_X&lfn=/store/a.root&model=cachemodel", "GET"))]
    tflite = artifact(built, "v2", "tflite")
    cycles = 0
    while all(p.poll() is None for p in loads):
        files = {"name": "churn", "params": ("params.json", b'{"name": "churn"}'), "model": ("m", tflite)}
        status, body = multipart(port, "/upload", files)
        assert status == 200, body
        status, body = http(port, "/json", json.dumps({"values": PROBES[0], "model": "churn"}).encode())
        assert status == 200, body                          # read-your-writes, any worker
        assert http(port, "/delete/churn", method="DELETE", headers=AUTH)[0] == 200
        assert http(port, "/json", json.dumps({"values": PROBES[0], "model": "churn"}).encode())[0] == 404
        cycles += 1
    results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in loads]
    for res in results:
        assert res["errors"] == 0 and set(res["status"]) == {"200"}, res
    assert cycles >= 2


def multipart(port: int, path: str, parts: dict) -> tuple[int, bytes]:
    boundary = "smartcache-test-boundary"
    out = io.BytesIO()
    for key, value in parts.items():
        out.write(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            out.write(f'Content-Disposition: form-data; name="{key}"; filename="{value[0]}"\r\n'
                      "Content-Type: application/octet-stream\r\n\r\n".encode() + value[1] + b"\r\n")
        else:
            out.write(f'Content-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    out.write(f"--{boundary}--\r\n".encode())
    return http(port, path, out.getvalue(), headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"})
