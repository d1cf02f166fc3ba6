"""Extract untrusted model tarballs without tar-slip, links, devices or decompression bombs.

Members are checked *before* anything is written: every name must be relative, free of
``..`` and NUL, below one top-level folder; only regular files and folders are allowed.
Files are then written by hand (never ``extractall``), created exclusively under ``dest``.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib
from pathlib import Path

from smartcache.catalog.base import check_name
from smartcache.catalog.errors import Invalid

MAX_MEMBERS = 10_000
_CHUNK = 1 << 20


def check_member_name(name: str) -> tuple[str, ...]:
    """The path parts of a safe member name; raises :class:`Invalid` otherwise."""
    if not name or "\x00" in name or "\\" in name:
        raise Invalid(f"unsafe path in bundle: {name!r}")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise Invalid(f"absolute path in bundle: {name!r}")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if not parts or ".." in parts:
        raise Invalid(f"path escapes the bundle: {name!r}")
    if posixpath.normpath(name).startswith(".."):
        raise Invalid(f"path escapes the bundle: {name!r}")
    return parts


def check_members(members: list[tarfile.TarInfo], max_bytes: int) -> str:
    """Validate every member; returns the single top-level folder name."""
    if not members:
        raise Invalid("bundle is empty")
    if len(members) > MAX_MEMBERS:
        raise Invalid(f"bundle has more than {MAX_MEMBERS} members")
    tops, total, seen = set(), 0, set()
    for m in members:
        parts = check_member_name(m.name)
        if m.issym() or m.islnk():
            raise Invalid(f"links are not allowed in a bundle: {m.name!r}")
        if not (m.isfile() or m.isdir()):
            raise Invalid(f"only files and folders are allowed in a bundle: {m.name!r}")
        if m.isfile():
            total += m.size
            if len(parts) < 2:
                raise Invalid(f"bundle files must be inside one top-level folder: {m.name!r}")
        if total > max_bytes:
            raise Invalid(f"bundle unpacks to more than {max_bytes} bytes")
        key = "/".join(parts)
        if key in seen and m.isfile():
            raise Invalid(f"duplicate member in bundle: {m.name!r}")
        seen.add(key)
        tops.add(parts[0])
    if len(tops) != 1:
        raise Invalid(f"bundle must have exactly one top-level folder, found {sorted(tops)}")
    top = tops.pop()
    check_name(top, "bundle folder (model name)")
    return top


def open_tar(data: bytes) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise Invalid(f"not a (gzip) tar archive: {e}") from e


def extract_bundle(data: bytes, dest: Path, *, max_bytes: int) -> str:
    """Extract the tarball ``data`` under ``dest`` (which must exist); returns the top folder."""
    dest = dest.resolve()
    with open_tar(data) as tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise Invalid(f"corrupt tar archive: {e}") from e
        top = check_members(members, max_bytes)
        written = 0
        for m in members:
            target = dest.joinpath(*check_member_name(m.name))
            if dest not in target.parents:  # belt and braces after the name check
                raise Invalid(f"path escapes the bundle: {m.name!r}")
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written += _copy_member(tar, m, target, max_bytes - written)
    return top


def _copy_member(tar: tarfile.TarFile, m: tarfile.TarInfo, target: Path, budget: int) -> int:
    try:
        src = tar.extractfile(m)
        if src is None:
            raise Invalid(f"cannot read {m.name!r} from bundle")
        n = 0
        with src, open(target, "xb") as out:  # "x": never follow or overwrite anything
            while chunk := src.read(_CHUNK):
                n += len(chunk)
                if n > budget:
                    raise Invalid("bundle unpacks to more bytes than allowed")
                out.write(chunk)
        return n
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise Invalid(f"corrupt tar archive at {m.name!r}: {e}") from e
