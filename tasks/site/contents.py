"""What an XCache holds, read from its own data folder (``oss.localroot``).

Every cached file ``<root>/store/…/f.root`` has a ``f.root.cinfo`` beside it with the file's size, which
blocks are present and the access records. ``xrdpfc_print -j`` (Debian's xrootd-server) decodes them;
without it, the data file's allocated blocks give the cached bytes and completeness is unknown.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from smartcache.catalog.errors import Invalid

CINFO = ".cinfo"


@dataclass(frozen=True)
class CachedFile:
    lfn: str
    size: int                  # the file's full size
    bytes_cached: int          # bytes of it on the cache's disk
    complete: bool | None      # None: not known (no xrdpfc_print)
    accesses: int | None = None


@dataclass(frozen=True)
class CacheContents:
    root: str
    files: tuple[CachedFile, ...]
    scanned: str               # ISO 8601, UTC

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def n_bytes(self) -> int:
        return sum(f.bytes_cached for f in self.files)

    @property
    def n_complete(self) -> int:
        return sum(1 for f in self.files if f.complete)

    def lfns(self, complete_only: bool = True) -> set[str]:
        return {f.lfn for f in self.files if f.complete or (not complete_only and f.complete is None)}

    def summary(self) -> dict:
        return {"files": self.n_files, "bytes": self.n_bytes, "complete": self.n_complete, "root": self.root}


def scan_cache(data_dir: Path, *, use_print: bool = True, batch: int = 200) -> CacheContents:
    """List the cache's files (one ``.cinfo`` each) with their sizes and completeness."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise Invalid(f"cache data folder {data_dir} does not exist")
    cinfos = sorted(data_dir.rglob(f"*{CINFO}"))
    tool = shutil.which("xrdpfc_print") if use_print else None
    decoded: dict[str, dict] = {}
    if tool:
        for i in range(0, len(cinfos), batch):
            decoded.update(_print_json(tool, cinfos[i:i + batch]))
    files = []
    for cinfo in cinfos:
        data = cinfo.with_name(cinfo.name[:-len(CINFO)])
        lfn = "/" + data.relative_to(data_dir).as_posix()
        try:
            st = data.stat()
        except FileNotFoundError:
            continue                      # purged between the listing and now
        info = decoded.get(str(cinfo))
        size = int(info["file_size"]) if info else st.st_size
        complete = (info.get("state_complete") == "complete") if info else None
        cached = size if complete else min(st.st_blocks * 512, size)
        files.append(CachedFile(lfn, size, cached, complete, info.get("n_acc_total") if info else None))
    return CacheContents(str(data_dir), tuple(files), datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _print_json(tool: str, paths: list[Path]) -> dict[str, dict]:
    try:
        out = subprocess.run([tool, "-j", *map(str, paths)], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return {}
    found = {}
    for line in out.stdout.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "file" in obj:
            found[obj["file"]] = obj
    if paths and not found and "ermission" in out.stderr:
        raise Invalid(f"cannot read the cache's .cinfo files under {paths[0].parent} "
                      "(run the agent as root or as the xrootd user)")
    return found


def write_contents(contents: CacheContents, path: Path) -> tuple[Path, str]:
    """CSV ``lfn,size,bytes_cached,complete,accesses``; returns the path and its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lfn", "size", "bytes_cached", "complete", "accesses"])
        for c in contents.files:
            w.writerow([c.lfn, c.size, c.bytes_cached, "" if c.complete is None else int(c.complete),
                        "" if c.accesses is None else c.accesses])
    tmp.replace(path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()
