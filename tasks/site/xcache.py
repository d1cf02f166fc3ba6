"""Start and stop a site's XRootD origin and XCache on 127.0.0.1, from the project's config templates.

Used by the tests, the benchmarks and the demo site (:mod:`.demo`, ``smartcache site up|down``). A site
folder holds everything::

    <root>/site.json            ports, pids, paths (written by up, read by down and the agent)
    <root>/origin/data/store/…  the origin's files;  origin.cfg, origin.log
    <root>/cache/data/store/…   XCache's copies, each with a .cinfo;  xcache.cfg, xcache.log
    <root>/lists/<site>.txt     the placement list the decision plugin admits by

``xrootd`` refuses to run as root: as root the servers run with ``-R xrootd`` and their folders are
chowned to that user, which must also be able to reach (o+x) every parent folder.
"""

from __future__ import annotations

import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Mapping

from smartcache.catalog.errors import Invalid, SmartcacheError, Unavailable

TEMPLATES = Path(__file__).parent / "templates"
DEBIAN_PACKAGES = ("xrootd-server", "libxrootd-server-dev", "libxrootd-dev", "g++")
XROOTD_USER = "xrootd"
_READY = re.compile(r"------ xrootd \S+:(\d+) initialization (completed|failed)")
_OFS_READ = re.compile(r"ofs_read: (\d+)@\d+ fn=(\S+)")
_OFS_OPEN = re.compile(r"ofs_open: \S+ fn=(\S+)")


class XrootdError(SmartcacheError):
    """An XRootD server did not start or stop as asked."""


# -- what the machine has ----------------------------------------------------------------------
def missing_packages() -> list[str]:
    """Debian packages the site tools need that are not installed (by their files)."""
    checks = {"xrootd-server": shutil.which("xrootd") and shutil.which("xrdpfc_print"),
              "libxrootd-server-dev": Path("/usr/include/xrootd/XrdPfc/XrdPfcDecision.hh").exists(),
              "libxrootd-dev": Path("/usr/include/xrootd/XrdVersion.hh").exists() and any(
                  Path(d, "libXrdUtils.so").exists() for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64",
                                                               "/usr/lib/aarch64-linux-gnu", "/usr/lib")),
              "g++": shutil.which("g++")}
    return [p for p, ok in checks.items() if not ok]


def xrootd_binary() -> str:
    path = shutil.which("xrootd")
    if not path:
        raise Unavailable("xrootd is not installed (Debian: apt-get install xrootd-server)")
    return path


def run_as_user() -> str | None:
    """The user servers drop to: ``xrootd`` when we are root (xrootd refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(XROOTD_USER)
    except KeyError as e:
        raise Unavailable(f"running as root needs the '{XROOTD_USER}' user (Debian's xrootd-server makes it)") from e
    return XROOTD_USER


def give_to_server(*paths: Path) -> None:
    """Make folders the servers write into theirs (as root), and check the server user can reach them."""
    user = run_as_user()
    if user is None:
        return
    pw = pwd.getpwnam(user)
    for top in paths:
        for p in [top, *top.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
        check_reachable(top)


def check_reachable(path: Path) -> None:
    """As root, every parent of ``path`` must be traversable by the server user (o+x)."""
    if run_as_user() is None:
        return
    for parent in Path(path).resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise Invalid(f"the {XROOTD_USER} user cannot reach {path}: {parent} is not o+x; "
                          f"use a folder outside it (e.g. --dir /srv/smartcache/site)")


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill ``tasks/site/templates/<template>`` (``${name}`` fields; every one must be given)."""
    text = (TEMPLATES / template).read_text()
    try:
        return Template(text).substitute({k: "" if v is None else str(v) for k, v in values.items()})
    except KeyError as e:
        raise Invalid(f"template {template} needs a value for {e.args[0]}") from e


# -- one server ----------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    pid: int
    port: int
    config: str
    log: str
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"root://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return _is_our_xrootd(self.pid, self.config)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; only the pid we started, checked against its config."""
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout)

    def to_dict(self) -> dict:
        return {"name": self.name, "pid": self.pid, "port": self.port, "config": self.config, "log": self.log}


def _is_our_xrootd(pid: int, config: str) -> bool:
    # a recycled pid must not be killed: the command line must name our config file
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and cmd[0].endswith(b"xrootd") and config.encode() in cmd


def start_server(name: str, config: Path, log: Path, *, timeout: float = 20.0) -> Server:
    """Run ``xrootd -c config`` in its own session; return once its port answers a stat of /store.

    The log's final banner ('------ xrootd ...:PORT initialization completed') only gives the port
    ("xrd.port any"); that the server serves is proven by a real XRootD request, because earlier
    lines say 'initialization completed' too and a banner is no promise that requests are answered.
    """
    # No "-l LOGFILE": with it, xrootd 5.5's log-rotation thread calls mktime() -> getenv("TZ") while the
    # main thread still setenv()s during configuration, and now and then dies of SIGSEGV on the moved
    # environment before it logs a line (about 1 start in 100 under load). Without it the server logs
    # to stderr, which is the log file.
    cmd = [xrootd_binary(), "-c", str(config)]
    user = run_as_user()
    if user:
        cmd += ["-R", user]
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    server = Server(name, proc.pid, 0, str(config), str(log), proc)
    deadline = time.monotonic() + timeout
    why = f"no port in its log within {timeout:g} s"
    while time.monotonic() < deadline and proc.poll() is None:
        m = _READY.search(_read_from(log, offset))
        if m and m.group(2) == "failed":
            why = "initialization failed"
            break
        if m:
            server.port = int(m.group(1))
            why = wait_serving(server, deadline)
            if why is None:
                return server
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        why = f"exited with code {proc.returncode}"
    server.stop(1.0)
    tail = _read_from(log, offset)[-1500:]
    raise XrootdError(f"{name} did not start ({why}; see {log}):\n{tail}")


def wait_serving(server: Server, deadline: float) -> str | None:
    """Stat /store at ``server`` until it answers (None) or ``deadline`` passes / the server exits (why not)."""
    from smartcache.tasks.site.agent import xrootd_client      # the client, set to fail fast on a dead port
    fs = xrootd_client().FileSystem(server.url)
    message = "no answer"
    while server.alive():
        left = deadline - time.monotonic()
        if left <= 0:
            return f"port {server.port} did not answer a stat of /store: {message}"
        status, _ = fs.stat("/store", timeout=max(1, min(5, int(left))))
        if status.ok:
            return None
        message = status.message.strip()
        time.sleep(0.05)
    return "exited before it answered a request"


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait_for_log(server: Server, pattern: str, since: int, timeout: float = 30.0) -> str:
    """Wait until ``pattern`` (a regex) appears in the server's log after byte ``since``."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = rx.search(_read_from(Path(server.log), since))
        if m:
            return m.group(0)
        if not server.alive():
            raise XrootdError(f"{server.name} exited while waiting for {pattern!r} (see {server.log})")
        time.sleep(0.05)
    raise XrootdError(f"{server.name}: no {pattern!r} in {server.log} within {timeout:g} s")


def log_size(server: Server) -> int:
    return Path(server.log).stat().st_size


# -- origin and cache -----------------------------------------------------------------------
@dataclass(frozen=True)
class CacheSettings:
    blocksize: str = "1m"
    prefetch: int = 0
    ram: str = "1g"
    cache_bytes: int | None = None     # the cache's file budget (purged down to it); None = disk only
    purge_interval: int = 60           # seconds; XCache 5.5 refuses less than 60
    disk_low: float = 0.95             # fractions of the whole file system
    disk_high: float = 0.98
    trace: str = "info"                # "debug" logs every decision

    def diskusage(self) -> str:
        words = [f"{self.disk_low:g}", f"{self.disk_high:g}"]
        if self.cache_bytes:
            # in KiB with the unit: XCache reads a bare number as a fraction of the disk
            nominal = max(2, -(-int(self.cache_bytes) // 1024))
            words += ["files", f"{nominal // 2}k", f"{nominal}k", f"{nominal + max(nominal // 4, 1)}k"]
        return " ".join(words + ["purgeinterval", str(self.purge_interval)])


def make_files(data_dir: Path, sizes: Mapping[str, int], seed: int = 1) -> dict[str, int]:
    """Write files of real (seeded pseudo-random) bytes at ``data_dir/<lfn>``; returns lfn -> size."""
    rng = random.Random(seed)
    for lfn, size in sizes.items():
        path = data_dir / lfn.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(int(size)))
    return dict(sizes)


def start_origin(root: Path, name: str = "origin", *, trace_reads: bool = True, port: int | str = "any") -> Server:
    """An origin serving ``root/data/store`` (create files there first, e.g. with :func:`make_files`);
    ``port`` a number to come back on the port of a stopped origin."""
    for d in ("data/store", "admin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    cfg = root / "origin.cfg"
    cfg.write_text(render("origin.cfg.in", {
        "name": name, "port": port, "data_dir": root / "data", "admin_dir": root / "admin",
        "trace": "ofs.trace open read close" if trace_reads else ""}))
    give_to_server(root)
    return start_server(name, cfg, root / "origin.log")


def start_cache(root: Path, origin: str, name: str = "xcache", *, settings: CacheSettings = CacheSettings(),
                decisionlib: str | None = None) -> Server:
    """An XCache in ``root`` in front of ``origin`` (host:port); ``decisionlib`` is the pfc.decisionlib value."""
    for d in ("data", "admin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    cfg = root / "xcache.cfg"
    cfg.write_text(render("xcache.cfg.in", {
        "name": name, "port": "any", "origin": origin, "data_dir": root / "data", "admin_dir": root / "admin",
        "ram": settings.ram, "blocksize": settings.blocksize, "prefetch": settings.prefetch,
        "diskusage": settings.diskusage(), "trace": settings.trace,
        "decisionlib": f"pfc.decisionlib {decisionlib}" if decisionlib else ""}))
    give_to_server(root)
    return start_server(name, cfg, root / "xcache.log")


def restart(server: Server) -> Server:
    """Stop and start a server with the same config (XCache purges 1 s after a start)."""
    server.stop()
    return start_server(server.name, Path(server.config), Path(server.log))


# -- what the origin served ------------------------------------------------------------------------
@dataclass(frozen=True)
class OriginTraffic:
    bytes: dict[str, int]      # lfn -> bytes read from the origin
    opens: dict[str, int]      # lfn -> opens at the origin

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


def origin_traffic(origin: Server, since: int = 0) -> OriginTraffic:
    """Opens and bytes the origin served per file after log byte ``since`` (needs ``trace_reads``)."""
    text = _read_from(Path(origin.log), since)
    read: dict[str, int] = {}
    opened: dict[str, int] = {}
    for n, fn in _OFS_READ.findall(text):
        read[fn] = read.get(fn, 0) + int(n)
    for fn in _OFS_OPEN.findall(text):
        opened[fn] = opened.get(fn, 0) + 1
    return OriginTraffic(read, opened)


# -- a demo site: state file, up, down --------------------------------------------------------------
