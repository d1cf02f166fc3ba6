"""A real XRootD origin on 127.0.0.1 for tests (Debian's ``xrootd-server``; CI installs it).

Import the fixture into a test module: ``from xrootd_fixtures import xrootd_origin  # noqa: F401``.
It yields an :class:`XRootDOrigin` with ``url`` (``root://127.0.0.1:PORT``) and ``root`` (the local
folder the server exports as ``/store``). Skips (fails under CI) with the reason when ``xrootd`` is not
installed, when the tests do not run as root (xrootd must drop privileges to its own user) or when the
Python client (PyPI ``xrootd``) is missing.

The server is the product's own origin (:func:`smartcache.tasks.site.xcache.start_origin`): the same
config template, and ready only once its port answers a stat of /store.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    # The XRootD client library crashes the process (SIGSEGV) when it is loaded after TensorFlow
    # (tested: tensorflow-cpu 2.21 + xrootd 6.2.1). Test modules import TensorFlow lazily, inside
    # tests, so loading the client here -- at collection -- keeps the order safe for the whole session.
    import XRootD.client  # noqa: F401
except ImportError:
    pass

from smartcache.tasks.site import xcache as X


@dataclass
class XRootDOrigin:
    server: X.Server
    workdir: Path       # what start_origin was given: workdir/data/store is /store

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def root(self) -> Path:
        return self.workdir / "data"

    def local(self, path: str) -> Path:
        """The local file behind an exported path such as ``/store/lists/a.txt``."""
        return self.root / path.lstrip("/")

    def stop(self) -> None:
        self.server.stop()


def _why_not() -> str | None:
    if not shutil.which("xrootd"):
        return "xrootd is not installed (apt-get install xrootd-server)"
    if os.geteuid() != 0:
        return "the xrootd fixture runs the server as the 'xrootd' user, which needs root"
    try:
        pwd.getpwnam(X.XROOTD_USER)
    except KeyError:
        return "no 'xrootd' user (it comes with Debian's xrootd-server package)"
    try:
        import XRootD.client  # noqa: F401
    except ImportError:
        return "the XRootD Python client is missing (pip install xrootd)"
    return None


def start_origin(workdir: Path, port: int | str = "any") -> XRootDOrigin:
    """Start (or, with the port of a stopped one, restart) the origin in ``workdir``; returns once it serves."""
    return XRootDOrigin(X.start_origin(workdir, "test-origin", trace_reads=False, port=port), workdir)


@pytest.fixture
def xrootd_origin():
    reason = _why_not()
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI must provide a real XRootD server: {reason}")
    if reason:
        pytest.skip(reason)
    # not under pytest's tmp_path (root-only, 0700): the xrootd user must reach every parent folder
    workdir = Path(tempfile.mkdtemp(prefix="smartcache-xrootd-"))
    os.chmod(workdir, 0o755)
    origin = start_origin(workdir)
    try:
        yield origin
    finally:
        origin.stop()
        shutil.rmtree(workdir, ignore_errors=True)
