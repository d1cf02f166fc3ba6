"""Run untrusted model code in a bubblewrap sandbox.

Loading a SavedModel runs the uploader's graph: a TF1 ``main_op`` or a TF2 resource
initializer can write and read files, and chained with a ``.pth`` file it can run Python in the
next process. So every conversion and first load of an uploaded model runs in ``bwrap``:

* new user, PID, IPC, UTS, cgroup and **network** namespaces (no interface but a dead
  loopback), all capabilities dropped, ``--die-with-parent``, a new session;
* a root that holds only the system (``/usr`` and its links), the Python installation, the
  virtualenv and smartcache's own code, all **read-only**; a private, size-capped ``/tmp``;
* the model folder read-only at ``/in`` and one empty output folder writable at ``/out``;
* a cleared environment (no ``SMARTCACHE_*``, no credentials); no view of SMARTCACHE_HOME,
  the catalog, ``/etc`` beyond the loader cache, ``/home``, ``/root``, or ``/run``;
* rlimits (``prlimit``) on address space, CPU seconds, file size and open files; ``nice 10``.

When no sandbox can be made (no ``bwrap``, no ``prlimit``, user namespaces disabled) the
caller refuses the conversion, unless the operator set ``inference.sandbox = "off"``: then
the child runs unconfined except for the rlimits, and every run logs a warning.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from smartcache.catalog.errors import Unavailable

log = logging.getLogger("smartcache.inference")

IN, OUT = "/in", "/out"
NICE = 10
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")
# Environment inside the box: nothing of the service's own; TF kept small and quiet.
_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
        "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "MALLOC_ARENA_MAX": "2",
        "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "2", "OMP_NUM_THREADS": "2",
        "PYTHONDONTWRITEBYTECODE": "1"}


class SandboxUnavailable(Unavailable):
    """No sandbox can be made on this machine, and the operator did not opt out."""


@dataclass(frozen=True)
class Limits:
    """rlimits of a sandboxed run. Measured: a TF 2.21 conversion of a small model peaks at
    ~2.3 GB of address space and ~0.7 GB resident, with < 20 open files."""

    address_space: int = 4 << 30
    cpu_seconds: int = 300
    file_size: int = 2 << 30
    open_files: int = 256
    tmp_bytes: int = 256 << 20       # the private /tmp is memory: cap it

    def for_input(self, input_bytes: int, timeout: float) -> "Limits":
        """Room for a model of ``input_bytes`` (TF holds a few copies of the variables)."""
        return Limits(self.address_space + 4 * input_bytes, max(1, int(timeout)),
                      max(self.file_size, 2 * input_bytes), self.open_files, self.tmp_bytes)


def prlimit_args(limits: Limits) -> list[str]:
    exe = shutil.which("prlimit")
    if exe is None:
        raise SandboxUnavailable("prlimit (util-linux) is not installed")
    # a conversion is batch work: at a lower priority it does not slow the requests being served
    nice = shutil.which("nice")
    return ([nice, "-n", str(NICE)] if nice else []) + [exe, f"--as={limits.address_space}", f"--cpu={limits.cpu_seconds}",
            f"--fsize={limits.file_size}", f"--nofile={limits.open_files}", "--"]


def _code_dirs() -> list[Path]:
    """Read-only paths the child's Python needs: the interpreter, the venv, smartcache's code."""
    paths = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths.add(Path(os.path.realpath(sys.executable)).parent.parent)
    for pkg in ("smartcache.catalog", "smartcache.inference"):
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.submodule_search_locations:
            paths.update(Path(p) for p in spec.submodule_search_locations)
    paths = {p.resolve() for p in paths if p.exists()}
    # a path under another bound path (or under /usr, bound anyway) needs no bind of its own
    return sorted(p for p in paths
                  if not any(q != p and q in p.parents for q in paths) and Path("/usr") not in p.parents
                  and p != Path("/usr"))


def bwrap_args(in_dir: Path, out_dir: Path, limits: Limits, env: dict[str, str]) -> list[str]:
    exe = shutil.which("bwrap")
    if exe is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    args = [exe, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--clearenv", "--ro-bind", "/usr", "/usr"]
    for link in _SYSTEM_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for f in _ETC_FILES:
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    for d in _code_dirs():
        args += ["--ro-bind", str(d), str(d)]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
             "--ro-bind", str(in_dir), IN, "--bind", str(out_dir), OUT, "--chdir", "/tmp"]
    for k, v in env.items():
        args += ["--setenv", k, v]
    return args + ["--"]


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why no sandbox can be made here (None if one can): tried once per process, for real."""
    import tempfile
    try:
        with tempfile.TemporaryDirectory(prefix="smartcache-sbx-probe-") as tmp:
            d = Path(tmp)
            cmd = prlimit_args(Limits()) + bwrap_args(d, d, Limits(), _ENV) + ["/bin/true"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except SandboxUnavailable as e:
        return str(e)
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap could not run: {e}"
    if proc.returncode != 0:
        return f"bubblewrap cannot make a sandbox here: {proc.stderr.strip()[:300]}"
    return None


@dataclass(frozen=True)
class Sandbox:
    """How untrusted model code runs: ``mode`` is ``bubblewrap`` or ``off`` (the operator's opt-out)."""

    mode: str = "bubblewrap"
    limits: Limits = Limits()

    def describe(self) -> str:
        if self.mode == "off":
            return "off (operator opt-out: uploaded models run unconfined)"
        reason = unavailable_reason()
        return f"unavailable: {reason}" if reason else "bubblewrap"

    def command(self, argv: Callable[[str, str], list[str]], in_dir: Path, out_dir: Path,
                limits: Limits) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that run ``argv(in_path, out_path)`` on ``in_dir``
        (read-only) and ``out_dir`` (writable)."""
        if self.mode == "off":
            log.warning("UNSANDBOXED model conversion (inference.sandbox = \"off\"): the uploaded "
                        "model's code runs with the service's user, files and network")
            return prlimit_args(limits) + argv(str(in_dir), str(out_dir)), dict(_ENV)
        reason = unavailable_reason()
        if reason:
            raise SandboxUnavailable(
                f"refusing to convert an uploaded model without a sandbox: {reason}. Install bubblewrap "
                "(Debian: apt-get install bubblewrap), or set inference.sandbox = \"off\" in config.toml "
                "to run conversions unconfined (unsafe)")
        return prlimit_args(limits) + bwrap_args(in_dir, out_dir, limits, _ENV) + argv(IN, OUT), {}
