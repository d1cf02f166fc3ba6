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

CPP = Path(__file__).parent / "cpp"
SOURCE = CPP / "XrdPfcListDecision.cc"            # the plugin; the other .cc files are its parts
INCLUDE = Path("/usr/include/xrootd")
LIB_NAME = "libXrdPfcListDecision"


class BuildError(SmartcacheError):
    """The compiler rejected the plugin."""


def sources() -> list[Path]:
    return sorted(CPP.glob("*.cc"))


def source_digest() -> str:
    """Of every source and header: a changed part is a changed plugin."""
    h = hashlib.sha256()
    for p in sorted([*CPP.glob("*.cc"), *CPP.glob("*.hh")]):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def compile_command(out: Path, *, cxx: str = "g++", include: Path = INCLUDE) -> list[str]:
    # -lXrdCl: the plugin stats files at the origin (XCache's own process loads the same library)
    return [cxx, "-std=c++14", "-O2", "-Wall", "-fPIC", "-shared", "-pthread", f"-I{include}", "-o", str(out),
            *map(str, sources()), "-lXrdCl", "-lXrdUtils"]


def build_plugin(out_dir: Path, *, cxx: str | None = None, force: bool = False) -> Path:
    """Compile the plugin into ``out_dir`` (skipped when this source was built there already)."""
    cxx = cxx or os.environ.get("CXX") or "g++"
    if not shutil.which(cxx):
        raise Unavailable(f"no C++ compiler {cxx!r} (Debian: apt-get install g++)")
    for header, package in (("XrdPfc/XrdPfcDecision.hh", "libxrootd-server-dev libxrootd-dev"),
                            ("XrdCl/XrdClFileSystem.hh", "libxrootd-client-dev")):
        if not (INCLUDE / header).exists():
            raise Unavailable(f"no {header} under {INCLUDE} (Debian: apt-get install {package})")
    digest = source_digest()
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
                    ttl: float = 300.0, retry: float = 30.0, max_answers: int = 100_000,
                    origin: str | None = None, origin_timeout_ms: int = 100, max_sizes: int = 100_000,
                    token_file: Path | None = None, report_url: str | None = None, report_every: float = 1.0,
                    report_batch: int = 1000, max_queue: int = 100_000) -> str:
    """The parameters after the library in ``pfc.decisionlib <lib> <params>``.

    ``origin`` (host:port) lets the plugin send each file's size with ``/decide``; ``token_file`` turns on
    reporting the opens answered from memory to ``report_url`` (default: the decide URL's ``/access``).
    The token file must be readable by the user XCache runs as.
    """
    if list_path is None and not decide_url:
        raise Invalid("the decision plugin needs a placement list, a decide URL, or both")
    for name, url in (("decide", decide_url), ("report", report_url)):
        if url and not url.startswith("http://"):
            raise Invalid(f"the plugin's {name} URL must be plain http:// (got {url!r})")
    words = [f"reload={reload:g}", f"default={int(default)}"]
    if list_path is not None:
        words.insert(0, f"list={Path(list_path).resolve()}")
    if decide_url:
        if not site:
            raise Invalid("asking the decide service needs the site name")
        words += [f"decide={_route(decide_url, '/decide')}",
                  f"site={site}", f"timeout_ms={timeout_ms}", f"ttl={ttl:g}", f"retry={retry:g}",
                  f"max_answers={max_answers}"]
    if origin:
        host, _, port = origin.rpartition(":")
        if not host or not port.isdigit():
            raise Invalid(f"the plugin's origin must be HOST:PORT (got {origin!r})")
        words += [f"origin={origin}", f"origin_timeout_ms={origin_timeout_ms}", f"max_sizes={max_sizes}"]
    if token_file is not None:
        if not site:
            raise Invalid("reporting accesses needs the site name")
        if not report_url and not decide_url:
            raise Invalid("reporting accesses needs the service's URL (decide_url or report_url)")
        if not decide_url:
            words.append(f"site={site}")
        words += [f"token_file={Path(token_file).resolve()}", f"report_every={report_every:g}",
                  f"report_batch={report_batch}", f"max_queue={max_queue}"]
        if report_url:
            words.append(f"report={_route(report_url, '/access')}")
    elif report_url:
        raise Invalid("reporting accesses needs a token file")
    for w in words:
        if any(c.isspace() for c in w):
            raise Invalid(f"plugin parameter must not contain spaces: {w!r}")
    return " ".join(words)


def _route(url: str, route: str) -> str:
    """The service's base URL or a URL of the route itself -> the route's URL."""
    url = url.rstrip("/")
    return url if url.endswith(route) else url + route


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
