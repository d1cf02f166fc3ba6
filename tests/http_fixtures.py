"""A small real HTTP/WebDAV file server on 127.0.0.1 for push tests (GET, PUT, DELETE, MOVE).

``PUT`` writes aside and renames (as a careful site server does); ``MOVE`` renames with
``Overwrite``. Faults can be switched on to play a flaky or broken site:
``fail_next[method] = n`` answers the next n requests of that method with 503;
``corrupt_puts = True`` stores every PUT body with its last byte dropped;
``allow_move = False`` answers MOVE with 405 (a server without WebDAV).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest


@dataclass
class ServerState:
    root: Path
    fail_next: dict = field(default_factory=dict)
    corrupt_puts: bool = False
    allow_move: bool = True
    log: list = field(default_factory=list)        # (method, path, status)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: ServerState  # set on the subclass
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _path(self, raw: str) -> Path | None:
        rel = unquote(urlsplit(raw).path).lstrip("/")
        p = (self.state.root / rel).resolve()
        return p if p == self.state.root or self.state.root in p.parents else None

    def _reply(self, code: int, body: bytes = b"") -> None:
        self.state.log.append((self.command, self.path, code))
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _fault(self) -> bool:
        with self.state.lock:
            n = self.state.fail_next.get(self.command, 0)
            if n:
                self.state.fail_next[self.command] = n - 1
        if n:
            self._drain()
            self._reply(503)
        return bool(n)

    def _drain(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        if self._fault():
            return
        p = self._path(self.path)
        if p is None or not p.is_file():
            return self._reply(404)
        self._reply(200, p.read_bytes())

    do_HEAD = do_GET

    def do_PUT(self):
        if self._fault():
            return
        body = self._drain()
        p = self._path(self.path)
        if p is None:
            return self._reply(403)
        if self.state.corrupt_puts:
            body = body[:-1]
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".upload")
        tmp.write_bytes(body)
        existed = p.exists()
        os.replace(tmp, p)
        self._reply(204 if existed else 201)

    def do_DELETE(self):
        if self._fault():
            return
        p = self._path(self.path)
        if p is None or not p.is_file():
            return self._reply(404)
        p.unlink()
        self._reply(204)

    def do_MOVE(self):
        if self._fault():
            return
        if not self.state.allow_move:
            return self._reply(405)
        src, dst = self._path(self.path), self._path(self.headers.get("Destination", ""))
        if src is None or dst is None:
            return self._reply(403)
        if not src.is_file():
            return self._reply(404)
        existed = dst.exists()
        if existed and self.headers.get("Overwrite", "T").upper() == "F":
            return self._reply(412)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        self._reply(204 if existed else 201)


@dataclass
class HTTPSite:
    url: str
    state: ServerState

    @property
    def root(self) -> Path:
        return self.state.root


@pytest.fixture
def http_site(tmp_path):
    root = (tmp_path / "http-site").resolve()
    root.mkdir()
    state = ServerState(root)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HTTPSite(f"http://127.0.0.1:{server.server_address[1]}", state)
    finally:
        server.shutdown()
        server.server_close()
