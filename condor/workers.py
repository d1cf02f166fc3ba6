"""Backends that add and remove elastic workers for the autoscaler.

``local``: extra condor_master + condor_startd pairs inside the project's pool chroot, one state
dir and name per worker (``<root>/var/lib/condor/workers/<name>``), built from
``templates/elastic-worker.config`` (what a site puts on a node image) plus
``templates/local-worker.config`` (loopback and CLAIMTOBE for the local pool). A worker is
removed with a *peaceful* shutdown: its startd takes no new job and exits only once the running
ones have finished, so removal never kills a job; an idle worker also leaves by itself after
``STARTD_NOCLAIM_SHUTDOWN``.

``command``: runs an operator's command with the target count, e.g.
``kubectl scale deployment wn-pod --replicas {n}``; the worker image should carry the elastic
worker template, whose idle timeout makes nodes leave only when they run nothing.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from smartcache.catalog.errors import ConfigError, SmartcacheError
from smartcache.condor.pool import WORKERS_DIR, master_pid, mounts_under, pool_root

TEMPLATES = Path(__file__).resolve().parent / "templates"
STARTUP_GRACE = 30.0        # seconds a new worker may take to write its pidfile
KEEP_DONE = 20              # state dirs of stopped workers kept for their logs


class WorkerError(SmartcacheError):
    """A worker could not be started or stopped."""


@dataclass(frozen=True)
class Worker:
    name: str
    pid: int | None
    started: float
    retiring: bool = False

    @property
    def alive(self) -> bool:
        return self.pid is not None


def _pool_settings(root: Path) -> dict[str, str]:
    """SMARTCACHE_POOL_* values minipool.sh wrote into the pool's condor_config."""
    out = {}
    path = root / "etc" / "condor" / "condor_config"
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise WorkerError(f"no pool in {root}: {e}") from e
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip().startswith("SMARTCACHE_POOL_"):
            out[key.strip()] = value.strip()
    return out


def _uid_of(root: Path, user: str) -> int:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2])
    raise WorkerError(f"no user {user} in the pool's chroot {root}")


class LocalBackend:
    """Elastic workers as extra condor_masters (each with one startd) in the local pool."""

    name = "local"

    def __init__(self, root: Path | str | None = None, *, worker_cpus: int = 1, worker_memory_mb: int = 2048,
                 idle_timeout: float = 120.0):
        self.root = pool_root(root)
        self.dir = self.root / WORKERS_DIR
        self.worker_cpus, self.worker_memory_mb = worker_cpus, worker_memory_mb
        self.idle_timeout = max(1, int(idle_timeout))

    # -- inventory ---------------------------------------------------------------------------
    def workers(self) -> list[Worker]:
        """Workers whose master runs (or that were started moments ago), oldest first."""
        found = []
        for d in sorted(self.dir.glob("w*")):
            if not (d / "started").exists():
                continue
            started = float((d / "started").read_text() or 0)
            pid = master_pid(self.root, state_dir=f"{WORKERS_DIR}/{d.name}")
            just_started = not (d / "run" / "master.pid").exists() and time.time() - started < STARTUP_GRACE
            if pid is None and not just_started:
                continue
            found.append(Worker(d.name, pid, started, (d / "retiring").exists()))
        return sorted(found, key=lambda w: (w.started, w.name))

    def reap(self) -> list[str]:
        """Move the state dirs of stopped workers aside (their logs are kept a while)."""
        alive = {w.name for w in self.workers()}
        done = self.dir / ".done"
        gone = []
        for d in sorted(self.dir.glob("w*")):
            if d.name in alive or not (d / "started").exists() or mounts_under(d):
                continue
            done.mkdir(exist_ok=True)
            shutil.rmtree(done / d.name, ignore_errors=True)
            os.replace(d, done / d.name)
            gone.append(d.name)
        for old in sorted(done.glob("w*"), key=lambda p: p.stat().st_mtime)[:-KEEP_DONE] if done.exists() else []:
            shutil.rmtree(old, ignore_errors=True)
        return gone

    # -- start / stop ------------------------------------------------------------------------
    def _next_name(self) -> str:
        counter = self.dir / ".next"
        n = int(counter.read_text() or 1) if counter.exists() else 1
        counter.write_text(str(n + 1))
        return f"w{n:04d}"

    def _config_text(self, name: str, settings: dict[str, str]) -> str:
        header = f"""# smartcache elastic worker {name}: written by smartcache.condor.workers
SMARTCACHE_POOL_ROOT = {self.root}
SMARTCACHE_POOL_USER = {settings['SMARTCACHE_POOL_USER']}
SMARTCACHE_CENTRAL_MANAGER = 127.0.0.1:{settings['SMARTCACHE_POOL_PORT']}
SMARTCACHE_WORKER_NAME = {name}
SMARTCACHE_WORKER_CPUS = {self.worker_cpus}
SMARTCACHE_WORKER_MEMORY = {self.worker_memory_mb}
SMARTCACHE_WORKER_IDLE_TIMEOUT = {self.idle_timeout}
RELEASE_DIR = /usr
BIN = /usr/bin
SBIN = /usr/sbin
LIB = /usr/lib/condor
LIBEXEC = /usr/libexec/condor
SHARE = /usr/share/condor
LOCAL_DIR = $(SMARTCACHE_POOL_ROOT)/{WORKERS_DIR}/{name}
LOCAL_CONFIG_FILE =
LOCAL_CONFIG_DIR =
"""
        parts = [header] + [(TEMPLATES / f).read_text() for f in ("elastic-worker.config", "local-worker.config")]
        return "\n".join(parts)

    def start_worker(self) -> Worker:
        """Start one worker; returns at once (its startd reports to the collector seconds later)."""
        settings = _pool_settings(self.root)
        if master_pid(self.root) is None:
            raise WorkerError(f"the pool in {self.root} is not running ('smartcache pool up')")
        user = settings.get("SMARTCACHE_POOL_USER", "smartcache")
        uid = _uid_of(self.root, user)
        self.dir.mkdir(parents=True, exist_ok=True)
        name = self._next_name()
        d = self.dir / name
        for sub in ("log", "spool", "execute", "lock", "run", "cred_dir"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "condor_config").write_text(self._config_text(name, settings))
        now = time.time()
        (d / "started").write_text(f"{now:.3f}")
        for p in [d, *d.rglob("*")]:
            os.chown(p, uid, uid)
        inside = f"/{WORKERS_DIR}/{name}"
        cmd = ["chroot", str(self.root), "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}",
               "--clear-groups", "--inh-caps=+dac_override,+fowner", "--ambient-caps=+dac_override,+fowner",
               "--", "/usr/bin/env", "-i", f"HOME=/home/{user}", f"USER={user}", f"LOGNAME={user}",
               "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
               f"CONDOR_CONFIG={inside}/condor_config",
               "/usr/sbin/condor_master", "-pidfile", f"{inside}/run/master.pid"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise WorkerError(f"cannot start worker {name}: {proc.stderr.strip() or proc.returncode}")
        return Worker(name, master_pid(self.root, state_dir=f"{WORKERS_DIR}/{name}"), now)

    def retire(self, name: str) -> None:
        """Peaceful shutdown: no new jobs; running ones finish; then the worker's master exits."""
        import classad2
        import htcondor2
        d = self.dir / name
        address = (d / "log" / ".master_address").read_text().splitlines()[0].strip() \
            if (d / "log" / ".master_address").exists() else None
        if not address:
            raise WorkerError(f"worker {name} has no master address yet")
        ad = classad2.ClassAd({"MyType": "DaemonMaster", "MyAddress": address, "Name": name})
        try:
            htcondor2.send_command(ad, htcondor2.DaemonCommand.OffPeaceful)
        except htcondor2.HTCondorException as e:
            raise WorkerError(f"cannot retire worker {name}: {e}") from e
        (d / "retiring").write_text(f"{time.time():.3f}")

    def stop_all(self, timeout: float = 60.0) -> int:
        """Stop every worker now (SIGTERM to its master: running jobs are vacated). For pool down."""
        return stop_all_local_workers(self.root, timeout)


def stop_all_local_workers(root: Path | str | None = None, timeout: float = 60.0) -> int:
    backend = LocalBackend(root)
    live = [w for w in backend.workers() if w.pid]
    for w in live:
        with contextlib.suppress(ProcessLookupError):   # already gone
            os.kill(w.pid, 15)
    deadline = time.time() + timeout
    while time.time() < deadline and any(w.pid and os.path.exists(f"/proc/{w.pid}") for w in live):
        time.sleep(0.5)
    backend.reap()
    return len(live)


class CommandBackend:
    """Runs an operator command with the target worker count (``{n}`` in the command)."""

    name = "command"

    def __init__(self, command: str, timeout: float = 300.0):
        if "{n}" not in command:
            raise ConfigError("the scaling command must contain {n} (the target worker count)")
        self.command, self.timeout = command, timeout

    def scale_to(self, n: int) -> str:
        argv = [part.replace("{n}", str(n)) for part in shlex.split(self.command)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise WorkerError(f"scaling command failed: {e}") from e
        if proc.returncode != 0:
            raise WorkerError(f"scaling command exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return proc.stdout.strip()
