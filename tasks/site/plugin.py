"""Build the XCache decision plugin (C++, ``tasks/site/cpp``) and write its ``pfc.decisionlib`` line.

The plugin admits the files of the site's placement list, reloads the list when the file changes, and
can ask the inference service's ``/decide`` about files not on the list (see the source's header).
``smartcache site build-plugin`` runs :func:`build_plugin`; the library is named after the source's
checksum, so a changed source is rebuilt and an unchanged one is not.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from smartcache.catalog.errors import Invalid, SmartcacheError, Unavailable

SOURCE = Path(__file__).parent / "cpp" / "XrdPfcListDecision.cc"
INCLUDE = Path("/usr/include/xrootd")
LIB_NAME = "libXrdPfcListDecision"


class BuildError(SmartcacheError):
    """The compiler rejected the plugin."""


def compile_command(out: Path, *, cxx: str = "g++", include: Path = INCLUDE) -> list[str]:
    return [cxx, "-std=c++14", "-O2", "-Wall", "-fPIC", "-shared", "-pthread", f"-I{include}", "-o", str(out), str(SOURCE),
            "-lXrdUtils"]


def build_plugin(out_dir: Path, *, cxx: str | None = None, force: bool = False) -> Path:
    """Compile the plugin into ``out_dir`` (skipped when this source was built there already)."""
    cxx = cxx or os.environ.get("CXX") or "g++"
    if not shutil.which(cxx):
        raise Unavailable(f"no C++ compiler {cxx!r} (Debian: apt-get install g++)")
    if not (INCLUDE / "XrdPfc" / "XrdPfcDecision.hh").exists():
        raise Unavailable(f"no XrdPfc/XrdPfcDecision.hh under {INCLUDE} "
                          "(Debian: apt-get install libxrootd-server-dev libxrootd-dev)")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"{LIB_NAME}-{digest}.so"
    if lib.exists() and not force:
        return lib
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    cmd = compile_command(tmp, cxx=cxx)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"building the decision plugin failed: {shlex.join(cmd)}\n{done.stderr[-3000:]}")
    tmp.chmod(0o755)
    tmp.replace(lib)      # atomic: a running XCache never sees a half-written library
    return lib


def decision_params(*, list_path: Path | None = None, reload: float = 5.0, default: bool = False,
                    decide_url: str | None = None, site: str | None = None, timeout_ms: int = 250,
                    ttl: float = 300.0, retry: float = 30.0, max_answers: int = 100_000) -> str:
    """The parameters after the library in ``pfc.decisionlib <lib> <params>``."""
    if list_path is None and not decide_url:
        raise Invalid("the decision plugin needs a placement list, a decide URL, or both")
    if decide_url and not decide_url.startswith("http://"):
        raise Invalid(f"the plugin's decide URL must be plain http:// (got {decide_url!r})")
    words = [f"reload={reload:g}", f"default={int(default)}"]
    if list_path is not None:
        words.insert(0, f"list={Path(list_path).resolve()}")
    if decide_url:
        if not site:
            raise Invalid("asking the decide service needs the site name")
        words += [f"decide={decide_url.rstrip('/')}{'' if decide_url.rstrip('/').endswith('/decide') else '/decide'}",
                  f"site={site}", f"timeout_ms={timeout_ms}", f"ttl={ttl:g}", f"retry={retry:g}",
                  f"max_answers={max_answers}"]
    for w in words:
        if any(c.isspace() for c in w):
            raise Invalid(f"plugin parameter must not contain spaces: {w!r}")
    return " ".join(words)


def decisionlib_line(lib: Path, **params) -> str:
    """``<lib> <params>``: the value of the ``pfc.decisionlib`` directive."""
    return f"{Path(lib).resolve()} {decision_params(**params)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.site.plugin",
                                 description="Build the XCache decision plugin.")
    ap.add_argument("--out", type=Path, required=True, help="folder for the .so")
    ap.add_argument("--force", action="store_true", help="rebuild even if this source was built")
    args = ap.parse_args(argv)
    try:
        print(build_plugin(args.out, force=args.force))
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
