"""The site agent: pre-place a site's pushed placement list into its XCache and report what is cached.

A placement list is text: ``#`` header lines (``# smartcache placement site=S model=name:version
created=ISO8601 files=N bytes=B``), then one LFN per line. The agent

1. reads the pushed list at the site's push destination (a path, ``file://``, ``root://`` or
   ``https://``; checked against the ``.sha256`` the push writes beside it) and, if asked, installs it
   atomically where the XCache decision plugin reads it (so that the plugin admits the listed files);
2. reads every listed file in full through the cache (``pfc.prefetch 0`` caches only what is read),
   with bounded concurrency and a progress bar, remembering done LFNs in a state file keyed by the
   list's checksum so that a rerun resumes;
3. scans the cache's own data folder (``.cinfo`` files, via ``xrdpfc_print -j``) and records the
   contents in the catalog as a ``cache-contents`` dataset ``cache/<site>``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from smartcache.catalog.errors import Invalid, SmartcacheError, Unavailable
from smartcache.tasks.push.backends import open_destination, split_target
from smartcache.tasks.site.contents import CacheContents, scan_cache, write_contents

CHUNK = 8 * 2**20
DATASET_KIND = "cache-contents"


class AgentError(SmartcacheError):
    """The agent could not read the list or reach the cache."""


# -- the placement list ------------------------------------------------------------------------
@dataclass(frozen=True)
class PlacementList:
    lfns: tuple[str, ...]
    header: dict[str, str]
    source: str
    checksum: str             # sha256 of the list's bytes
    text: str = field(repr=False, default="")


def parse_placement_list(text: str, source: str = "list") -> PlacementList:
    """Parse the list format; header ``key=value`` words are collected, duplicates dropped."""
    header: dict[str, str] = {}
    lfns: dict[str, None] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            for word in line.lstrip("#").split():
                key, eq, value = word.partition("=")
                if eq:
                    header.setdefault(key, value)     # the first header line wins
            continue
        lfn = line.split()[0]
        if not lfn.startswith("/"):
            raise Invalid(f"{source}:{n}: an LFN must start with '/', got {lfn[:80]!r}")
        lfns[lfn] = None
    checksum = hashlib.sha256(text.encode()).hexdigest()
    return PlacementList(tuple(lfns), header, source, checksum, text)


def read_pushed_list(push_uri: str, site: str, *, attempts: int = 3) -> PlacementList:
    """Read the site's list at its push destination (a path, file://, root:// or https:// URI; a folder
    holds ``<site>.txt``), checked against the ``<list>.sha256`` the push publishes beside it."""
    if "://" not in push_uri:
        push_uri = Path(push_uri).resolve().as_uri() + ("/" if push_uri.endswith("/") else "")
    root, name = split_target(push_uri, site)
    where = f"{root.rstrip('/')}/{name}"
    dest = open_destination(root)
    for attempt in range(attempts):
        data = dest.read(name)
        if data is None:
            raise AgentError(f"no placement list at {where} (has a list been pushed to site {site}?)")
        side = dest.read(f"{name}.sha256")
        # the push renames the list, then its sidecar: a mismatch can be a push in progress
        if side is None or side.split(b" ", 1)[0].strip() == hashlib.sha256(data).hexdigest().encode():
            break
        time.sleep(0.5 * (attempt + 1))
    else:
        raise AgentError(f"{where} does not match its {name}.sha256: a damaged or unfinished push")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid(f"placement list {where} is not UTF-8 text") from e
    return parse_placement_list(text, where)


def install_list(plist: PlacementList, dest: Path) -> bool:
    """Write the list where the plugin reads it (aside, then rename); False if it is already there."""
    dest = Path(dest)
    if dest.exists() and hashlib.sha256(dest.read_bytes()).hexdigest() == plist.checksum:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_text(plist.text)
    tmp.chmod(0o644)          # the xrootd user must read it
    tmp.replace(dest)
    return True


# -- reading through the cache ------------------------------------------------------------------
_XRD_DEFAULTS = {"ConnectionRetry": 1, "ConnectionWindow": 10, "TimeoutResolution": 1, "StreamErrorWindow": 1}
_client_lock = threading.Lock()
_client_ready = False


def xrootd_client():
    """The XRootD client, set to fail in seconds on a dead server (unless the operator set XRD_*)."""
    global _client_ready
    try:
        from XRootD import client
    except ImportError as e:
        raise Unavailable("the XRootD Python client is not installed (pip install xrootd)") from e
    with _client_lock:
        if not _client_ready:
            # process-wide client settings: by default a refused connection is retried for minutes and,
            # after a failure, the client will not reconnect to that server for 30 minutes
            for key, value in _XRD_DEFAULTS.items():
                if f"XRD_{key.upper()}" not in os.environ:
                    client.EnvPutInt(key, value)
            _client_ready = True
    return client


def read_through(cache_url: str, lfn: str, *, chunk: int = CHUNK, timeout: int = 120) -> int:
    """Read ``lfn`` in full through the cache; returns its size. Reads stop at the file's size
    (XCache 5.5 answers a read past the end of a file it does not cache with 'bad message')."""
    client = xrootd_client()
    f = client.File()
    status, _ = f.open(f"{cache_url.rstrip('/')}/{lfn}", timeout=timeout)
    if not status.ok:
        raise AgentError(status.message.strip())
    try:
        status, info = f.stat(timeout=timeout)
        if not status.ok:
            raise AgentError(status.message.strip())
        done = 0
        while done < info.size:
            status, data = f.read(done, min(chunk, info.size - done), timeout=timeout)
            if not status.ok:
                raise AgentError(status.message.strip())
            if not data:
                raise AgentError(f"short read at {done} of {info.size} bytes")
            done += len(data)
        return done
    finally:
        f.close(timeout=timeout)


@dataclass
class PlaceReport:
    listed: int = 0
    placed: int = 0
    skipped: int = 0                       # done in an earlier run (state file)
    bytes_read: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"listed": self.listed, "placed": self.placed, "skipped": self.skipped,
                "bytes_read": self.bytes_read, "failed": len(self.failed), "failures": dict(self.failed),
                "seconds": round(self.seconds, 3)}


def place_files(lfns: list[str] | tuple[str, ...], cache_url: str, *, state_path: Path | None = None,
                concurrency: int = 4, progress: bool | None = None, chunk: int = CHUNK) -> PlaceReport:
    """Read every LFN through the cache, ``concurrency`` at a time; LFNs in ``state_path`` are skipped."""
    if concurrency < 1:
        raise Invalid("concurrency must be at least 1")
    xrootd_client()
    t0 = time.perf_counter()
    done = _load_state(state_path)
    todo = [lfn for lfn in lfns if lfn not in done]
    report = PlaceReport(listed=len(lfns), skipped=len(lfns) - len(todo))
    state = open(state_path, "a") if state_path else None
    try:
        with _progress(len(todo), progress) as bar, ThreadPoolExecutor(concurrency) as pool:
            futures = {pool.submit(read_through, cache_url, lfn, chunk=chunk): lfn for lfn in todo}
            for fut in as_completed(futures):
                lfn = futures[fut]
                try:
                    n = fut.result()
                except SmartcacheError as e:
                    report.failed[lfn] = str(e)
                else:                           # results are handled here, in this one thread
                    report.placed += 1
                    report.bytes_read += n
                    if state:
                        state.write(lfn + "\n")
                        state.flush()           # a killed run keeps what it finished
                bar.update(1)
    finally:
        if state:
            state.close()
    report.seconds = time.perf_counter() - t0
    return report


def _load_state(path: Path | None) -> set[str]:
    if path is None or not Path(path).exists():
        return set()
    return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}


def _progress(total: int, enabled: bool | None):
    from tqdm import tqdm
    disable = not sys.stderr.isatty() if enabled is None else not enabled
    return tqdm(total=total, unit="file", desc="placing", file=sys.stderr, disable=disable)


# -- the whole agent run --------------------------------------------------------------------------
@dataclass(frozen=True)
class AgentResult:
    site: str
    list_uri: str
    header: dict
    installed: bool
    placement: PlaceReport
    contents: CacheContents | None
    dataset: str | None
    not_cached: tuple[str, ...] = ()       # read without error, yet not in the cache (plugin declined?)

    @property
    def ok(self) -> bool:
        return not self.placement.failed and not self.not_cached

    def to_dict(self) -> dict:
        return {"site": self.site, "list": self.list_uri, "header": self.header, "installed": self.installed,
                "placement": self.placement.to_dict(), "not_cached": list(self.not_cached),
                "contents": self.contents.summary() if self.contents else None, "dataset": self.dataset}


def run_agent(store, site: str, list_uri: str, cache_url: str, *, state_dir: Path,
              install_to: Path | None = None, cache_dir: Path | None = None, concurrency: int = 4,
              progress: bool | None = None, settle_wait: float = 5.0, plugin_reload: float = 5.0) -> AgentResult:
    """Read the pushed list, install it for the plugin (optional), pre-place it, and record the
    cache's contents in the catalog (when the cache's data folder is given). ``plugin_reload`` is the
    plugin's ``reload``: a list younger than that may not be the one the plugin admits by yet."""
    plist = read_pushed_list(list_uri, site)
    if plist.header.get("site") not in (None, site):
        raise Invalid(f"{list_uri} is the list of site {plist.header['site']!r}, not {site!r}")
    installed = install_list(plist, install_to) if install_to else False
    _wait_for_plugin(install_to or _local_list(list_uri, site), plugin_reload)
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    report = place_files(plist.lfns, cache_url, state_path=state_dir / f"done-{plist.checksum[:16]}.txt",
                         concurrency=concurrency, progress=progress)
    contents = dataset = None
    missing: tuple[str, ...] = ()
    if cache_dir is not None:
        expected = [lfn for lfn in plist.lfns if lfn not in report.failed]
        contents, missing = settle(Path(cache_dir), expected, settle_wait)
        dataset = record_contents(store, site, contents, state_dir, plist, report).name
    return AgentResult(site, list_uri, plist.header, installed, report, contents, dataset, missing)


def _local_list(list_uri: str, site: str) -> Path | None:
    if "://" not in list_uri:
        list_uri = Path(list_uri).resolve().as_uri() + ("/" if list_uri.endswith("/") else "")
    root, name = split_target(list_uri, site)
    parts = urlsplit(root)
    return Path(unquote(parts.path)) / name if parts.scheme == "file" else None


def _wait_for_plugin(list_path: Path | None, reload: float) -> None:
    """The plugin checks its list at most every ``reload`` s: wait until it has seen this one."""
    if not list_path or reload <= 0 or not Path(list_path).exists():
        return
    wait = Path(list_path).stat().st_mtime + reload + 0.2 - time.time()
    if wait > 0:
        time.sleep(min(wait, reload + 0.2))


def settle(cache_dir: Path, lfns: list[str], wait: float = 5.0) -> tuple[CacheContents, tuple[str, ...]]:
    """Scan the cache until every LFN shows (complete) or ``wait`` s pass: XCache writes blocks to disk
    asynchronously. Returns the contents and the LFNs still missing."""
    deadline = time.monotonic() + wait
    while True:
        contents = scan_cache(cache_dir)
        have = contents.lfns(complete_only=False)
        missing = tuple(lfn for lfn in lfns if lfn not in have)
        if not missing or time.monotonic() >= deadline:
            return contents, missing
        time.sleep(0.2)


def record_contents(store, site: str, contents: CacheContents, state_dir: Path,
                    plist: PlacementList | None = None, report: PlaceReport | None = None):
    """Write the contents CSV and upsert the catalog dataset ``cache/<site>`` (kind cache-contents)."""
    path, checksum = write_contents(contents, Path(state_dir) / "contents.csv")
    listed = set(plist.lfns) if plist else set()
    meta = {"site": site, **contents.summary(), "scanned": contents.scanned}
    if plist is not None:
        meta["list"] = {"source": plist.source, "checksum": plist.checksum, "files": len(plist.lfns),
                        **{k: plist.header[k] for k in ("model", "created") if k in plist.header},
                        "cached": sum(1 for f in contents.files if f.lfn in listed and f.complete is not False)}
    if report is not None:
        meta["placement"] = {k: v for k, v in report.to_dict().items() if k != "failures"}
    return store.register_dataset(f"cache/{site}", DATASET_KIND, path.resolve().as_uri(), format="csv",
                                  checksum=checksum, n_rows=contents.n_files, n_bytes=contents.n_bytes, meta=meta)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.site.agent", description=__doc__.splitlines()[0])
    ap.add_argument("--site", required=True)
    ap.add_argument("--list", dest="list_uri", required=True,
                    help="the push destination: the list or its folder (path, file://, root://, https://)")
    ap.add_argument("--cache", required=True, help="the XCache, root://host:port")
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--install", type=Path, help="copy the list here for the decision plugin")
    ap.add_argument("--cache-dir", type=Path, help="XCache's oss.localroot, to report its contents")
    ap.add_argument("--catalog", help="catalog URL (default: from the smartcache config)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--plugin-reload", type=float, default=5.0, help="the plugin's reload= seconds")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from smartcache.catalog import load_config, open_store
    try:
        store = open_store(args.catalog or load_config().catalog_url, migrate=True)
        try:
            result = run_agent(store, args.site, args.list_uri, args.cache, state_dir=args.state_dir,
                               install_to=args.install, cache_dir=args.cache_dir, concurrency=args.concurrency,
                               progress=False if args.no_progress else None, plugin_reload=args.plugin_reload)
        finally:
            store.close()
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    import json
    print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    return 0 if result.ok else 2


if __name__ == "__main__":
    sys.exit(main())
