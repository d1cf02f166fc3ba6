"""Where a placement list can land: a local folder, an XRootD server, or an HTTP(S)/WebDAV server.

Each :class:`Destination` offers the four primitives the push protocol (:mod:`smartcache.tasks.push.task`)
needs, on paths relative to its root: ``read`` (``None`` when missing), ``write`` (create or overwrite,
making parent folders), ``move`` (an atomic replace on the server) and ``remove`` (missing is fine).
Errors are :class:`PushError`; ``retryable`` tells whether trying again may help.

- ``file://``  : write then ``os.replace`` (atomic on POSIX within one filesystem), fsync'd.
- ``root://``  : the XRootD Python client (PyPI ``xrootd``): ``File.open(DELETE|MAKEPATH)`` + ``write``,
  ``FileSystem.mv`` (an atomic rename on the server), ``rm``.
- ``http(s)://``: ``PUT``/``GET``/``DELETE`` and WebDAV ``MOVE`` (``Overwrite: T``), as XRootD's own HTTP
  plug-in (XrdHttp), nginx's dav module and Apache mod_dav serve them. A server without ``MOVE`` gets
  the list ``PUT`` straight to its name: then atomicity is the server's (a plain PUT handler that writes
  in place can expose a half-written list to a concurrent reader).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import posixpath
import sys
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from smartcache.catalog.errors import SmartcacheError

TIMEOUT_S = 30
LIST_SUFFIXES = (".txt", ".list", ".lst")


class PushError(SmartcacheError):
    """A push step failed; ``retryable`` is True for faults that may pass (network, 5xx, timeouts)."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class Destination(Protocol):
    url: str

    def read(self, path: str) -> bytes | None: ...
    def write(self, path: str, data: bytes) -> None: ...
    def move(self, src: str, dst: str) -> None: ...
    def remove(self, path: str) -> None: ...


def split_target(push_uri: str, site: str) -> tuple[str, str]:
    """``(root URI, list path)`` of a site's list under ``push_uri``.

    A URI whose last segment ends in .txt/.list/.lst names the list itself; any other URI is a folder
    that receives ``<site>.txt``.
    """
    parts = urlsplit(push_uri)
    if parts.scheme not in ("file", "root", "xroot", "http", "https"):
        raise PushError(f"unsupported push destination {push_uri!r}: use file://, root:// or https://",
                        retryable=False)
    path = parts.path or "/"
    if path.rstrip("/").lower().endswith(LIST_SUFFIXES):
        folder, name = posixpath.split(path.rstrip("/"))
    else:
        folder, name = path.rstrip("/"), f"{site}.txt"
    root = urlunsplit((parts.scheme, parts.netloc, folder or "/", parts.query, ""))
    return root, name


def open_destination(root_uri: str) -> Destination:
    scheme = urlsplit(root_uri).scheme
    if scheme == "file":
        return FileDestination(root_uri)
    if scheme in ("root", "xroot"):
        return XRootDDestination(root_uri)
    if scheme in ("http", "https"):
        return HTTPDestination(root_uri)
    raise PushError(f"unsupported push destination {root_uri!r}", retryable=False)


# -- file:// ------------------------------------------------------------------------------------
class FileDestination:
    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise PushError(f"file:// URIs must be local (file:///path), not {url!r}", retryable=False)
        self.url = url
        self.root = Path(unquote(parts.path))

    def _p(self, path: str) -> Path:
        return self.root / path

    def read(self, path: str) -> bytes | None:
        try:
            return self._p(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise PushError(f"cannot read {self._p(path)}: {e}") from e

    def write(self, path: str, data: bytes) -> None:
        p = self._p(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())  # the bytes are on disk before the rename makes them visible
        except OSError as e:
            raise PushError(f"cannot write {p}: {e}") from e

    def move(self, src: str, dst: str) -> None:
        try:
            os.replace(self._p(src), self._p(dst))
            _fsync_dir(self._p(dst).parent)
        except OSError as e:
            raise PushError(f"cannot rename {self._p(src)} -> {self._p(dst)}: {e}") from e

    def remove(self, path: str) -> None:
        try:
            self._p(path).unlink(missing_ok=True)
        except OSError:
            pass  # best effort: only ever used to clean up a temporary file


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):   # some filesystems cannot fsync a folder: best effort
            os.fsync(fd)
    finally:
        os.close(fd)


# -- root:// ------------------------------------------------------------------------------------
class XRootDDestination:
    def __init__(self, url: str):
        if "tensorflow" in sys.modules and "XRootD.client" not in sys.modules:
            # Loading the XRootD client after TensorFlow crashes the process (SIGSEGV; tensorflow 2.21,
            # xrootd 6.2.1): refuse cleanly instead. Pushes run in their own process (tasks/push).
            raise PushError("root:// pushes cannot run in a process that has loaded TensorFlow: "
                            "run 'python -m smartcache.tasks.push' or 'smartcache push'", retryable=False)
        try:
            from XRootD import client
            from XRootD.client.flags import OpenFlags
        except ImportError as e:
            raise PushError("root:// pushes need the XRootD Python client: pip install xrootd",
                            retryable=False) from e
        parts = urlsplit(url)
        if not parts.hostname:
            raise PushError(f"root:// URI without a host: {url!r}", retryable=False)
        self.url = url
        self._client, self._flags = client, OpenFlags
        _xrootd_client_defaults(client)
        self.server = f"root://{parts.netloc}"
        self.root = parts.path if parts.path.startswith("/") else "/" + parts.path
        self.fs = client.FileSystem(self.server)

    def _p(self, path: str) -> str:
        return posixpath.join(self.root, path)

    def _check(self, status, what: str) -> None:
        if not status.ok:
            # errno 3010/3011: permission / not found: trying again will not help
            retry = status.errno not in (3010, 3011)
            raise PushError(f"xrootd {what} on {self.server}: {status.message.strip()}", retryable=retry)

    def read(self, path: str) -> bytes | None:
        f = self._client.File()
        status, _ = f.open(f"{self.server}/{self._p(path)}", timeout=TIMEOUT_S)
        if not status.ok:
            if status.errno == 3011:
                return None
            self._check(status, f"open {self._p(path)}")
        try:
            status, data = f.read(timeout=TIMEOUT_S)
            self._check(status, f"read {self._p(path)}")
            return bytes(data)
        finally:
            f.close(timeout=TIMEOUT_S)

    def write(self, path: str, data: bytes) -> None:
        f = self._client.File()
        status, _ = f.open(f"{self.server}/{self._p(path)}", self._flags.DELETE | self._flags.MAKEPATH,
                           timeout=TIMEOUT_S)
        self._check(status, f"create {self._p(path)}")
        try:
            status, _ = f.write(data, timeout=TIMEOUT_S)
            self._check(status, f"write {self._p(path)}")
        finally:
            status, _ = f.close(timeout=TIMEOUT_S)
        self._check(status, f"close {self._p(path)}")  # the server commits the file on close

    def move(self, src: str, dst: str) -> None:
        status, _ = self.fs.mv(self._p(src), self._p(dst), timeout=TIMEOUT_S)
        self._check(status, f"mv {self._p(src)} {self._p(dst)}")

    def remove(self, path: str) -> None:
        self.fs.rm(self._p(path), timeout=TIMEOUT_S)  # best effort


# The client's defaults retry a refused connection for minutes (5 tries x 120 s windows) and check
# timeouts every 15 s, and after a failure refuses to reconnect for 30 minutes (StreamErrorWindow); the push
# has its own retries, so fail fast unless the operator set XRD_* himself.
_XRD_DEFAULTS = {"ConnectionRetry": 2, "ConnectionWindow": 5, "TimeoutResolution": 1, "StreamErrorWindow": 1}


def _xrootd_client_defaults(client) -> None:
    for key, value in _XRD_DEFAULTS.items():
        if f"XRD_{key.upper()}" not in os.environ:
            client.EnvPutInt(key, value)


# -- http(s):// ---------------------------------------------------------------------------------
class HTTPDestination:
    def __init__(self, url: str):
        import requests
        self._requests = requests
        self.url = url.rstrip("/") + "/"
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "smartcache-push"
        self._has_move: bool | None = None

    def _u(self, path: str) -> str:
        return self.url + path.lstrip("/")

    def _call(self, method: str, path: str, **kw):
        try:
            return self.session.request(method, self._u(path), timeout=TIMEOUT_S, **kw)
        except self._requests.RequestException as e:
            raise PushError(f"{method} {self._u(path)}: {e.__class__.__name__}: {e}") from e

    def _check(self, r, what: str) -> None:
        if r.status_code >= 400:
            retry = r.status_code >= 500 or r.status_code in (408, 425, 429)
            raise PushError(f"{what} {r.url}: HTTP {r.status_code} {r.reason}", retryable=retry)

    def read(self, path: str) -> bytes | None:
        r = self._call("GET", path, headers={"Cache-Control": "no-cache"})
        if r.status_code in (404, 410):
            return None
        self._check(r, "GET")
        return r.content

    def write(self, path: str, data: bytes) -> None:
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        r = self._call("PUT", path, data=data, headers={"Content-Type": "text/plain; charset=utf-8",
                                                         "Digest": f"sha-256={digest}"})
        self._check(r, "PUT")

    def move(self, src: str, dst: str) -> None:
        if self._has_move is not False:
            r = self._call("MOVE", src, headers={"Destination": self._u(dst), "Overwrite": "T"})
            if r.status_code not in (405, 501):
                self._check(r, "MOVE")
                self._has_move = True
                return
            self._has_move = False
        # No WebDAV MOVE: send the verified bytes to the final name in one PUT.
        data = self.read(src)
        if data is None:
            raise PushError(f"temporary upload {self._u(src)} vanished")
        self.write(dst, data)
        self.remove(src)

    def remove(self, path: str) -> None:
        try:
            self._call("DELETE", path)
        except PushError:
            pass  # best effort
