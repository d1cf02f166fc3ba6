"""A real XRootD origin on 127.0.0.1 for tests (Debian's ``xrootd-server``; CI installs it).

Import the fixture into a test module: ``from xrootd_fixtures import xrootd_origin  # noqa: F401``.
It yields an :class:`XRootDOrigin` with ``url`` (``root://127.0.0.1:PORT``) and ``root`` (the local
folder the server exports as ``/store``). Skips (fails under CI) with the reason when ``xrootd`` is not installed,
when the tests do not run as root (xrootd must drop privileges to its own user) or when the Python
client (PyPI ``xrootd``) is missing.

xrootd refuses to run as root and opens its files after dropping to the ``xrootd`` user, so its
folders live in a fresh /tmp directory owned by that user (pytest's tmp_path is root-only, 0700).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
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

READY_RE = re.compile(r"initialization (completed|failed)")
PORT_RE = re.compile(r"xrootd \S+@\S+:(\d+) initialization completed")
USER = "xrootd"


@dataclass
class XRootDOrigin:
    url: str
    port: int
    root: Path          # what the server exports: root/"store" is /store
    workdir: Path
    proc: subprocess.Popen

    def local(self, path: str) -> Path:
        """The local file behind an exported path such as ``/store/lists/a.txt``."""
        return self.root / path.lstrip("/")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _why_not() -> str | None:
    if not shutil.which("xrootd"):
        return "xrootd is not installed (apt-get install xrootd-server xrootd-client)"
    if os.geteuid() != 0:
        return "the xrootd fixture runs the server as the 'xrootd' user, which needs root"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return "no 'xrootd' user (it comes with Debian's xrootd-server package)"
    try:
        import XRootD.client  # noqa: F401
    except ImportError:
        return "the XRootD Python client is missing (pip install xrootd)"
    return None


def start_origin(workdir: Path, port: int | str = "any", timeout: float = 15.0) -> XRootDOrigin:
    """Start ``xrootd`` exporting ``workdir/data/store``; returns once it accepts connections."""
    data, admin, run, logs = (workdir / d for d in ("data", "admin", "run", "log"))
    for d in (data / "store", admin, run, logs):
        d.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "xrootd.cfg"
    cfg.write_text(f"xrd.port {port}\n"
                   "xrd.allow host localhost\n"     # no bind-address directive: refuse non-loopback clients
                   "all.export /store\n"
                   f"oss.localroot {data}\n"
                   f"all.adminpath {admin}\n"
                   f"all.pidpath {run}\n")
    user = pwd.getpwnam(USER)
    for path in (workdir, data, data / "store", admin, run, logs, cfg):  # the server writes the rest as itself
        os.chown(path, user.pw_uid, user.pw_gid)
    logfile = logs / "xrootd.log"
    offset = logfile.stat().st_size if logfile.exists() else 0
    proc = subprocess.Popen(["xrootd", "-R", USER, "-c", str(cfg), "-l", f"={logfile}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = logfile.read_text(errors="replace")[offset:] if logfile.exists() else ""
        m = READY_RE.search(text)
        if m or proc.poll() is not None:
            found = PORT_RE.search(text)
            if m and m.group(1) == "completed" and found:
                p = int(found.group(1))
                return XRootDOrigin(f"root://127.0.0.1:{p}", p, data, workdir, proc)
            origin = XRootDOrigin("", 0, data, workdir, proc)
            origin.stop()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"xrootd did not start: {text[-2000:]}{err[-500:]}")
        time.sleep(0.02)
    XRootDOrigin("", 0, data, workdir, proc).stop()
    raise RuntimeError(f"xrootd did not report ready within {timeout}s (log {logfile})")


@pytest.fixture
def xrootd_origin():
    reason = _why_not()
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI must provide a real XRootD server: {reason}")
    if reason:
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix="smartcache-xrootd-"))
    os.chmod(workdir, 0o755)
    origin = start_origin(workdir)
    try:
        yield origin
    finally:
        origin.stop()
        shutil.rmtree(workdir, ignore_errors=True)
