"""The project's single-machine HTCondor pool, driven from Python.

``condor/pool/minipool.sh`` does the work (debootstrap a Debian trixie chroot, install Debian's
``htcondor``, start ``condor_master`` as an unprivileged job user); this module runs it with the
right host directories bound into the chroot and reports on the pool.

Host-side clients use the pool's own configuration file: :func:`pool_env` gives ``CONDOR_CONFIG``
(``<root>/etc/condor/condor_config``, a path that is valid on the host and inside the chroot) and
a ``PATH`` that finds ``/usr/local/bin/condor_dagman`` for ``Submit.from_dag``. Nothing else on the
host is changed except that one ``condor_dagman`` symlink (only if absent).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from smartcache.catalog.errors import SmartcacheError

DEFAULT_ROOT = Path("/opt/smartcache-pool")
SCRIPT = Path(__file__).resolve().parent / "pool" / "minipool.sh"
# Both mirror minipool.sh: the pool's state dir and the elastic workers' dirs, inside the chroot.
STATE_DIR = "var/lib/condor/smartcache-pool"
WORKERS_DIR = "var/lib/condor/workers"
DAGMAN_LINK = Path("/usr/local/bin/condor_dagman")


class PoolError(SmartcacheError):
    """The local pool could not be set up, started, stopped or queried."""


@dataclass(frozen=True)
class PoolStatus:
    root: Path
    installed: bool                 # the chroot holds condor_master
    running: bool                   # condor_master (by pidfile) is alive
    master_pid: int | None
    condor_config: Path
    daemons: dict[str, tuple[str, ...]] = field(default_factory=dict)   # kind -> names (collector)
    slots: tuple = ()               # smartcache.condor.collector.Slot
    mounts: tuple[str, ...] = ()    # host paths mounted under the chroot
    error: str | None = None        # why the collector could not be asked, if it could not

    @property
    def ready(self) -> bool:
        return self.running and bool(self.daemons.get("startds")) and bool(self.daemons.get("schedds"))

    def to_dict(self) -> dict:
        return {
            "root": str(self.root), "installed": self.installed, "running": self.running,
            "ready": self.ready, "master_pid": self.master_pid, "condor_config": str(self.condor_config),
            "daemons": {k: list(v) for k, v in self.daemons.items()},
            "slots": [vars(s) for s in self.slots], "mounts": list(self.mounts), "error": self.error,
        }


def pool_root(root: Path | str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The chroot: ``root``, else ``$SMARTCACHE_POOL_ROOT``, else /opt/smartcache-pool."""
    env = os.environ if env is None else env
    return Path(root or env.get("SMARTCACHE_POOL_ROOT") or DEFAULT_ROOT).absolute()


def condor_config_path(root: Path | str | None = None) -> Path:
    return pool_root(root) / "etc" / "condor" / "condor_config"


def pool_env(root: Path | str | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a host-side HTCondor client needs to use the pool (merge into os.environ).

    ``CONDOR_CONFIG`` is valid inside the chroot as well, which matters because DAGMan jobs
    inherit it from the submitter. Inherited ``_CONDOR_*`` variables should be dropped by callers.
    """
    env = os.environ if env is None else env
    path = env.get("PATH", "/usr/bin:/bin")
    if str(DAGMAN_LINK.parent) not in path.split(os.pathsep):
        path = f"{DAGMAN_LINK.parent}{os.pathsep}{path}"
    r = pool_root(root, env)
    return {"CONDOR_CONFIG": str(condor_config_path(r)), "PATH": path, "SMARTCACHE_POOL_ROOT": str(r)}


def cannot_run_reason() -> str | None:
    """Why this machine cannot host the pool (None if it can): root and Linux are needed."""
    if sys.platform != "linux":
        return f"the local pool needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the local pool needs root (debootstrap, mount, chroot)"
    for tool in ("chroot", "mount", "flock"):
        if not any(Path(d, tool).exists() for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin")):
            return f"the local pool needs {tool}"
    return None


def bind_dirs(home: Path | None = None, binds: Iterable[Path | str] = ()) -> list[Path]:
    """Host dirs to appear at the same path in the chroot, besides /tmp and the checkout."""
    dirs = [Path(sys.prefix), Path(sys.base_prefix)]
    if home is not None:
        dirs.append(Path(home))
    dirs.extend(Path(b) for b in binds)
    return [d.absolute() for d in dirs]


def _script_env(root: Path, *, home: Path | None, binds: Iterable[Path | str], repo: Path | None,
                cpus: int | None, memory_mb: int | None, port: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_CONDOR_")}
    env["SMARTCACHE_POOL_ROOT"] = str(root)
    env["SMARTCACHE_POOL_PYTHON"] = sys.executable
    dirs = bind_dirs(home, binds)
    for d in dirs[2:]:
        d.mkdir(parents=True, exist_ok=True)      # a dir must exist to be bound
    env["SMARTCACHE_POOL_BINDS"] = " ".join(str(d) for d in dirs)
    if home is not None:
        env["SMARTCACHE_HOME"] = str(home)
    for key, value in (("REPO", repo), ("CPUS", cpus), ("MEMORY", memory_mb), ("PORT", port)):
        if value is not None:
            env[f"SMARTCACHE_POOL_{key}"] = str(value)
    return env


def _run_script(command: str, env: dict[str, str], quiet: bool) -> None:
    reason = cannot_run_reason()
    if reason:
        raise PoolError(reason)
    try:
        proc = subprocess.run(["bash", str(SCRIPT), command], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE if quiet else None)
    except OSError as e:
        raise PoolError(f"cannot run {SCRIPT}: {e}") from e
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-15:] if quiet else []
        raise PoolError(f"minipool.sh {command} failed (exit {proc.returncode})"
                        + ("\n" + "\n".join(tail) if tail else ""))


def pool_up(root: Path | str | None = None, *, home: Path | None = None, binds: Iterable[Path | str] = (),
            repo: Path | None = None, cpus: int | None = None, memory_mb: int | None = None,
            port: int | None = None, quiet: bool = False) -> PoolStatus:
    """Set up the chroot if needed, start the pool if it is not running, wait until it is ready.

    ``home`` (the smartcache home) and ``binds`` are bound into the chroot at the same path,
    with /tmp, the checkout, ``sys.prefix`` and ``sys.base_prefix``. Progress goes to stderr.
    """
    r = pool_root(root)
    env = _script_env(r, home=home, binds=binds, repo=repo, cpus=cpus, memory_mb=memory_mb, port=port)
    _run_script("up", env, quiet)
    status = pool_status(r)
    if not status.ready:
        raise PoolError(f"pool in {r} started but is not ready: {status.error or status.daemons}")
    return status


def pool_down(root: Path | str | None = None, *, quiet: bool = False) -> None:
    """Stop the pool (elastic workers first, then condor_master by pidfile) and unmount the chroot."""
    r = pool_root(root)
    from smartcache.condor.workers import stop_all_local_workers
    if cannot_run_reason() is None:
        stop_all_local_workers(r)      # minipool.sh would stop them too, without keeping their logs
    _run_script("down", _script_env(r, home=None, binds=(), repo=None, cpus=None, memory_mb=None,
                                    port=None), quiet)


def master_pid(root: Path | str | None = None, state_dir: str = STATE_DIR) -> int | None:
    """The pid of the live condor_master of this chroot (pidfile checked against /proc), else None."""
    r = pool_root(root)
    pidfile = r / state_dir / "run" / "master.pid"
    try:
        pid = int(pidfile.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":       # daemonized parent left a zombie
        return None
    with contextlib.suppress(OSError):                   # pid reuse: it must live in our chroot
        if Path(os.readlink(f"/proc/{pid}/root")) != r:
            return None
    return pid


def mounts_under(root: Path | str | None = None) -> tuple[str, ...]:
    r = str(pool_root(root)).rstrip("/") + "/"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ()
    found = {line.split()[1] for line in lines if len(line.split()) > 1}
    return tuple(sorted(m for m in found if (m + "/").startswith(r)))


@contextlib.contextmanager
def use_pool_config(root: Path | str | None = None) -> Iterator[dict[str, str]]:
    """Point this process's HTCondor client at the pool for the duration of the block."""
    import htcondor2
    saved = {k: os.environ.get(k) for k in pool_env(root)}
    dropped = {k: v for k, v in os.environ.items() if k.startswith("_CONDOR_")}
    new = activate_pool_env(root)
    try:
        yield new
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.environ.update(dropped)
        htcondor2.reload_config()


def activate_pool_env(root: Path | str | None = None) -> dict[str, str]:
    """Point this process at the pool for good (for a test session or a CLI process)."""
    import htcondor2
    new = pool_env(root)
    for k in [k for k in os.environ if k.startswith("_CONDOR_")]:
        del os.environ[k]
    os.environ.update(new)
    htcondor2.reload_config()
    return new


def pool_status(root: Path | str | None = None, *, query: bool = True) -> PoolStatus:
    """Is the pool installed and running, and (if ``query``) what does its collector say?"""
    from smartcache.condor import collector
    r = pool_root(root)
    pid = master_pid(r)
    base = dict(root=r, installed=(r / "usr/sbin/condor_master").exists(), running=pid is not None,
                master_pid=pid, condor_config=condor_config_path(r), mounts=mounts_under(r))
    if pid is None or not query:
        return PoolStatus(**base)
    try:
        with use_pool_config(r):
            ads = collector.query_daemons()
            slots = tuple(collector.query_slots())
    except SmartcacheError as e:
        return PoolStatus(**base, error=str(e))
    daemons = {"masters": ads.masters, "schedds": ads.schedds, "startds": ads.startds,
               "negotiators": ads.negotiators}
    return PoolStatus(**base, daemons=daemons, slots=slots)
