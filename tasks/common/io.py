"""Files every part writes the same way: atomically (temp file + rename), with a SHA-256 beside the catalog row;
and the local path of a catalog dataset's URI."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from smartcache.catalog.errors import Invalid


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write atomically (temp file + rename): readers never see half a file, reruns replace whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def local_path(uri: str, what: str = "data") -> Path:
    """A dataset's ``file://`` URI (or plain path) as a path; ``what`` names it in the error for other schemes,
    which the nodes do not read."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:     # one letter: a Windows drive, a path
        raise Invalid(f"{what} at {uri!r}: only local paths and file:// URIs can be read")
    return Path(uri)
