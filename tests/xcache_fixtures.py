"""A real site on 127.0.0.1 for the tests: an XRootD origin with files of real bytes, XCaches in front of
it with the project's decision plugin, and a tiny /decide HTTP service the plugin can ask.

Needs Debian's xrootd-server libxrootd-server-dev libxrootd-dev g++ and PyPI's xrootd;
without them the tests skip (and fail under CI, which installs them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from smartcache.tasks.site import demo as D
from smartcache.tasks.site import xcache as X
from smartcache.tasks.site.contents import scan_cache
from smartcache.tasks.site.plugin import build_plugin, decisionlib_line

SITE = "T2_XX_Test"
MB = 10**6


def _requirements() -> str | None:
    missing = X.missing_packages()
    if missing:
        return f"Debian packages missing: {' '.join(missing)} (apt-get install {' '.join(X.DEBIAN_PACKAGES)})"
    try:
        import XRootD.client  # noqa: F401
    except ImportError:
        return "the XRootD Python client is missing (pip install xrootd)"
    return None


def require_xrootd() -> None:
    why = _requirements()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide XRootD: {why}")
        pytest.skip(why)


class DecideService:
    """GET /decide?site=S&lfn=L -> {"store": bool, ...}; answers from ``answers`` (lfn -> True, False or
    "slow"), False for anything else; records every question. A "slow" question is answered (True) only
    once ``release`` is set: a read that returns before then proves the plugin gave up waiting."""

    def __init__(self):
        self.answers: dict[str, object] = {}
        self.asked: list[tuple[str, str]] = []
        self.release = threading.Event()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                service.asked.append((q.get("site", ""), q.get("lfn", "")))
                answer = service.answers.get(q.get("lfn", ""), False)
                if answer == "slow":
                    service.release.wait(60)
                    answer = True
                body = json.dumps({"store": bool(answer), "score": 0.9 if answer else 0.1, "model": "test:1",
                                   "source": "model"}).encode()
                self.send_response(200 if url.path == "/decide" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except BrokenPipeError:
                    pass            # the plugin gave up waiting (the slow answer's point)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def questions_about(self, lfn: str) -> int:
        return sum(1 for _, asked in self.asked if asked == lfn)


@dataclass
class XrdSite:
    base: Path
    lib: Path
    origin: X.Server
    cache: X.Server            # admits by the list only
    cache_ask: X.Server        # admits by its (empty) list, else asks the decide service
    service: DecideService
    list_path: Path
    files: dict[str, int]
    extra: list[X.Server] = field(default_factory=list)

    @property
    def cache_dir(self) -> Path:
        return self.base / "cache" / "data"

    def data_dir(self, server: X.Server) -> Path:
        return Path(server.config).parent / "data"

    def lfns(self, group: str) -> list[str]:
        return sorted(lfn for lfn in self.files if f"/{group}/" in lfn)

    def read(self, server: X.Server, lfn: str) -> bytes:
        from smartcache.tasks.site.agent import xrootd_client
        f = xrootd_client().File()
        status, _ = f.open(f"{server.url}/{lfn}", timeout=30)
        assert status.ok, status.message
        try:
            size = self.files[lfn]
            status, data = f.read(0, size, timeout=30)
            assert status.ok, status.message
            return bytes(data)
        finally:
            f.close(timeout=10)

    def origin_bytes(self, lfn: str, since: int) -> int:
        return X.origin_traffic(self.origin, since).bytes.get(lfn, 0)

    def declined(self, server: X.Server, lfn: str, since: int) -> bool:
        """Whether ``server`` declined to cache ``lfn`` at an open after its log byte ``since``: XCache logs
        the decision when the file is opened, so after this returns True the file is never written."""
        X.wait_for_log(server, rf"(?m)Attach\(\) decision decline \S*/{re.escape(lfn)}$", since)
        return True

    def expected(self, lfn: str) -> bytes:
        return (self.base / "origin" / "data" / lfn.lstrip("/")).read_bytes()

    def write_list(self, lfns, path: Path | None = None) -> Path:
        """Replace the plugin's list the way a push does: write aside, rename, then the .sha256 sidecar."""
        path = path or self.list_path
        text = f"# smartcache placement site={SITE} model=test:1 files={len(lfns)}\n" + "".join(f"{x}\n" for x in lfns)
        for target, data in ((path, text), (path.with_name(path.name + ".sha256"),
                                            f"{hashlib.sha256(text.encode()).hexdigest()}  {path.name}\n")):
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(data)
            tmp.chmod(0o644)
            tmp.replace(target)
        return path

    def start_cache(self, name: str, **params) -> X.Server:
        server = X.start_cache(self.base / name, f"127.0.0.1:{self.origin.port}", name,
                               settings=X.CacheSettings(trace="debug"),
                               decisionlib=decisionlib_line(self.lib, **params))
        self.extra.append(server)
        return server


def cached(data_dir: Path, lfn: str, *, wait: float = 5.0) -> bool:
    """Whether the cache holds ``lfn`` complete (waits for the cache's asynchronous writes)."""
    deadline = time.monotonic() + wait
    while True:
        found = {f.lfn: f for f in scan_cache(data_dir).files}
        if lfn in found and found[lfn].complete:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def on_disk(data_dir: Path, lfn: str) -> bool:
    return (data_dir / lfn.lstrip("/")).exists() or (data_dir / (lfn.lstrip("/") + ".cinfo")).exists()


@pytest.fixture(scope="session")
def xrd_site():
    require_xrootd()
    # not under pytest's tmp_path: as root, the xrootd user must be able to reach every parent folder
    base = Path(tempfile.mkdtemp(prefix="smartcache-site-test-"))
    base.chmod(0o755)
    servers: list[X.Server] = []
    service = DecideService()
    site = None
    try:
        lib = build_plugin(base / "plugin")
        files = {f"/store/data/Run2026A/{group}/AOD/v1/{i:03d}.root": (1 + (i % 3)) * MB // 2 + 1234 * i
                 for group in ("agent", "direct", "swap", "ask", "resume", "cli") for i in range(4)}
        X.make_files(base / "origin" / "data", files, seed=7)
        origin = X.start_origin(base / "origin", "test-origin")
        servers.append(origin)
        list_path = base / "lists" / f"{SITE}.txt"
        list_path.parent.mkdir()
        list_path.write_text("# smartcache placement site=T2_XX_Test\n")
        list_path.chmod(0o644)
        cache = X.start_cache(base / "cache", f"127.0.0.1:{origin.port}", "test-xcache",
                              settings=X.CacheSettings(trace="debug"),
                              decisionlib=decisionlib_line(lib, list_path=list_path, reload=0))
        servers.append(cache)
        ask_list = base / "lists" / "ask.txt"
        ask_list.write_text("")
        ask_list.chmod(0o644)
        cache_ask = X.start_cache(base / "cache_ask", f"127.0.0.1:{origin.port}", "test-xcache-ask",
                                  settings=X.CacheSettings(trace="debug"),
                                  decisionlib=decisionlib_line(lib, list_path=ask_list, reload=0,
                                                               decide_url=service.url, site=SITE,
                                                               timeout_ms=300, retry=1))
        servers.append(cache_ask)
        site = XrdSite(base, lib, origin, cache, cache_ask, service, list_path, files)
        yield site
    finally:
        for s in reversed((site.extra if site else []) + servers):
            s.stop()
        for state in base.rglob(D.SITE_FILE):      # demo sites a failed test left running
            D.stop_site(state.parent)
        service.stop()
        shutil.rmtree(base, ignore_errors=True)
