"""A demo site on 127.0.0.1: an XRootD origin with demo files and an XCache in front of it (with the
decision plugin), its state in ``site.json`` so that ``smartcache site status|down`` find it again.

``python -m smartcache.tasks.site.demo down DIR`` / ``status DIR`` / ``missing`` (``up`` lives in the CLI).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path
from typing import Mapping

from smartcache.catalog.errors import Invalid, SmartcacheError
from smartcache.tasks.site.xcache import (CacheSettings, Server, check_reachable, give_to_server, make_files, missing_packages,
                                          start_cache, start_origin)

SITE_FILE = "site.json"


def save_site(root: Path, state: dict) -> Path:
    path = root / SITE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def load_site(root: Path) -> dict:
    path = Path(root) / SITE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise Invalid(f"no site at {root} (no {SITE_FILE}; start one with 'smartcache site up')") from e
    except json.JSONDecodeError as e:
        raise Invalid(f"{path} is not valid JSON: {e}") from e


def demo_files(n: int, size: int, *, era: str = "Run2026A") -> dict[str, int]:
    """``n`` CMS-shaped LFNs of ``size`` bytes each (sizes vary ±50% so the cache sees a spread)."""
    rng = random.Random(n)
    return {f"/store/data/{era}/SmartcacheDemo/AOD/v1/000/{i:04d}/{i:08x}-demo.root":
            max(1, int(size * rng.uniform(0.5, 1.5))) for i in range(n)}


def server_token(src: Path, dest: Path) -> Path:
    """A private copy of the service's token that the server user (and no one else) can read: the plugin
    runs inside XCache, and the user's own token file is usually readable by that user only."""
    try:
        token = src.read_text().strip()
    except OSError as e:
        raise Invalid(f"cannot read the token file {src}: {e.strerror or e}") from e
    if not token:
        raise Invalid(f"the token file {src} is empty")
    dest.unlink(missing_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    give_to_server(dest)
    return dest


def start_site(root: Path, site: str, *, files: Mapping[str, int] | None = None, plugin: Path | None = None,
               decide_url: str | None = None, reload: float = 5.0, default_admit: bool = False,
               settings: CacheSettings = CacheSettings(), seed: int = 1, token_file: Path | None = None) -> dict:
    """Origin + XCache (+ the decision plugin reading ``<root>/lists/<site>.txt``, sending the origin's file
    sizes to ``decide_url`` and, with ``token_file``, reporting the opens it answers itself); writes
    site.json."""
    from smartcache.tasks.site.plugin import decisionlib_line
    root = Path(root).resolve()
    if (root / SITE_FILE).exists() and stop_site(root, dry_run=True):
        raise Invalid(f"a site is already running in {root} (stop it with 'smartcache site down')")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    check_reachable(root)
    if files:
        make_files(root / "origin" / "data", files, seed)
    list_path = root / "lists" / f"{site}.txt"
    list_path.parent.mkdir(exist_ok=True)
    if token_file is not None:
        token_file = server_token(Path(token_file), root / "token")
    started: list[Server] = []
    try:
        started.append(start_origin(root / "origin", f"{site}-origin"))
        origin = started[0]
        decision = (decisionlib_line(plugin, list_path=list_path, reload=reload, default=default_admit,
                                     decide_url=decide_url, site=site, token_file=token_file,
                                     origin=f"127.0.0.1:{origin.port}" if decide_url or token_file else None)
                    if plugin else None)
        started.append(start_cache(root / "cache", f"127.0.0.1:{origin.port}", f"{site}-xcache",
                                   settings=settings, decisionlib=decision))
        cache = started[1]
        state = {"site": site, "root": str(root), "origin": origin.to_dict(), "cache": cache.to_dict(),
                 "origin_url": origin.url, "cache_url": cache.url, "cache_dir": str(root / "cache" / "data"),
                 "list_path": str(list_path), "push_uri": list_path.as_uri(),
                 "plugin": str(plugin) if plugin else None, "decide_url": decide_url, "reload": reload,
                 "state_dir": str(root / "agent")}
        save_site(root, state)
    except BaseException:
        for server in reversed(started):     # never leave servers nobody knows about
            server.stop()
        raise
    return state


def stop_site(root: Path, *, dry_run: bool = False) -> list[str]:
    """Stop the servers a site.json names (cache first); returns the names stopped (with ``dry_run``:
    the names still running)."""
    state = load_site(root)
    stopped = []
    for key in ("cache", "origin"):
        info = state.get(key)
        if info:
            server = Server(info["name"], info["pid"], info["port"], info["config"], info["log"])
            if server.alive():
                if not dry_run:
                    server.stop()
                stopped.append(info["name"])
    return stopped


def main(argv: list[str] | None = None) -> int:
    """``python -m smartcache.tasks.site.demo down DIR`` or ``status DIR`` (``up`` lives in the CLI)."""
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.site.demo", description=main.__doc__)
    ap.add_argument("action", choices=["down", "status", "missing"])
    ap.add_argument("dir", nargs="?", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.action == "missing":
            print(" ".join(missing_packages()))
        elif args.action == "down":
            print("stopped:", ", ".join(stop_site(args.dir)) or "nothing was running")
        else:
            print(json.dumps(load_site(args.dir), indent=2))
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
