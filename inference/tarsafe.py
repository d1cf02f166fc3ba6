"""Extract untrusted model tarballs: no tar-slip, links, devices or decompression bombs.

The tarball is read as a stream, member by member, and each member is checked *before*
anything of it is written: its name must be relative, free of ``..``, NUL and backslashes,
below the one top-level folder; only regular files and folders are allowed. Budgets stop
the read at the first overrun, so a bomb costs at most what the budget allows:

* members: at most :data:`MAX_MEMBERS`;
* bytes: the sizes the headers declare, and the bytes actually inflated, at most ``max_bytes``;
* ratio: past :data:`RATIO_FLOOR` inflated bytes, at most :data:`MAX_RATIO` inflated bytes per
  compressed byte read (real models compress a few times; bombs a thousand times).

Overruns raise :class:`BundleTooLarge` (HTTP 413), other refusals :class:`Invalid` (400).
Files are written by hand (never ``extractall``), each created exclusively under ``dest``.
"""

from __future__ import annotations

import gzip
import io
import os
import posixpath
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

from smartcache.catalog.base import check_name
from smartcache.catalog.errors import Invalid

MAX_MEMBERS = 10_000
MAX_RATIO = 200
RATIO_FLOOR = 64 << 20
_CHUNK = 1 << 20
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


class BundleTooLarge(Invalid):
    """A bundle over its byte, member or compression-ratio budget."""

    http_status = 413


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


def check_member_kind(m: tarfile.TarInfo) -> None:
    if m.issym() or m.islnk():
        raise Invalid(f"links are not allowed in a bundle: {m.name!r}")
    if not (m.isfile() or m.isdir()):
        raise Invalid(f"only files and folders are allowed in a bundle: {m.name!r}")


class _Counting(io.RawIOBase):
    """Counts the bytes read through it (the compressed side of the stream)."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.n = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.n += n
        return n


class _Budget(io.RawIOBase):
    """The inflated stream, refused past ``max_bytes`` or past the compression-ratio budget."""

    def __init__(self, inflated: BinaryIO, compressed: _Counting | None, max_bytes: int):
        self.inflated, self.compressed, self.max_bytes, self.n = inflated, compressed, max_bytes, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.inflated.read(len(b))
        n = len(data)
        b[:n] = data
        self.n += n
        # tar headers and padding come on top of the member bytes: allow a little
        if self.n > self.max_bytes + (1 << 20):
            raise BundleTooLarge(f"bundle unpacks to more than {self.max_bytes} bytes")
        if self.compressed is not None and self.n > RATIO_FLOOR and self.n > MAX_RATIO * max(self.compressed.n, 1):
            raise BundleTooLarge(f"bundle inflates more than {MAX_RATIO}:1 (a decompression bomb?)")
        return n


def _open_stream(fileobj: BinaryIO, max_bytes: int) -> tarfile.TarFile:
    """A streaming TarFile over ``fileobj`` (gzip or plain tar), behind the byte budgets."""
    head = fileobj.read(2)
    raw = io.BufferedReader(Prefixed(head, fileobj))
    if head == b"\x1f\x8b":
        counted = _Counting(raw)
        inflated: BinaryIO = gzip.GzipFile(fileobj=io.BufferedReader(counted, _CHUNK), mode="rb")
    else:
        counted, inflated = None, raw
    budget = io.BufferedReader(_Budget(inflated, counted, max_bytes), _CHUNK)
    try:
        return tarfile.open(fileobj=budget, mode="r|")
    except _READ_ERRORS as e:
        raise Invalid(f"not a (gzip) tar archive: {e}") from e


class Prefixed(io.RawIOBase):
    """``fileobj`` with ``head`` (already read from it) put back in front."""

    def __init__(self, head: bytes, fileobj: BinaryIO):
        self.head, self.fileobj = head, fileobj

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.fileobj.read(len(b))
        b[:len(data)] = data
        return len(data)


class _Extraction:
    """Per-bundle state: the top folder, names seen, declared bytes and members so far."""

    def __init__(self, dest: Path, max_bytes: int, max_members: int):
        self.dest, self.max_bytes, self.max_members = dest, max_bytes, max_members
        self.top: str | None = None
        self.seen: set[str] = set()
        self.declared = self.members = 0

    def check(self, m: tarfile.TarInfo) -> Path:
        """Refuse ``m`` or return where it goes (nothing is written for a refused member)."""
        self.members += 1
        if self.members > self.max_members:
            raise BundleTooLarge(f"bundle has more than {self.max_members} members")
        parts = check_member_name(m.name)
        check_member_kind(m)
        if m.isfile():
            if len(parts) < 2:
                raise Invalid(f"bundle files must be inside one top-level folder: {m.name!r}")
            self.declared += m.size
            if self.declared > self.max_bytes:
                raise BundleTooLarge(f"bundle unpacks to more than {self.max_bytes} bytes")
        if self.top is None:
            self.top = check_name(parts[0], "bundle folder (model name)")
        elif parts[0] != self.top:
            raise Invalid(f"bundle must have exactly one top-level folder, found {self.top!r} and {parts[0]!r}")
        key = "/".join(parts)
        if key in self.seen and m.isfile():
            raise Invalid(f"duplicate member in bundle: {m.name!r}")
        self.seen.add(key)
        target = self.dest.joinpath(*parts)
        if self.dest not in target.parents:  # belt and braces after the name check
            raise Invalid(f"path escapes the bundle: {m.name!r}")
        return target


def extract_stream(fileobj: BinaryIO, dest: Path, *, max_bytes: int, max_members: int = MAX_MEMBERS) -> str:
    """Extract the tarball read from ``fileobj`` under ``dest`` (which must exist); returns the
    top folder. On any refusal the caller discards ``dest`` (partial files may be there)."""
    dest = dest.resolve()
    state = _Extraction(dest, max_bytes, max_members)
    with _open_stream(fileobj, max_bytes) as tar:
        try:
            for m in tar:
                target = state.check(m)
                if m.isdir():
                    _mkdirs(dest, target)
                    continue
                _mkdirs(dest, target.parent)
                _copy_member(tar, m, target)
        except BundleTooLarge:
            raise
        except _READ_ERRORS as e:
            raise Invalid(f"corrupt tar archive: {e}") from e
    if state.top is None:
        raise Invalid("bundle is empty")
    return state.top


def extract_bundle(data: bytes, dest: Path, *, max_bytes: int) -> str:
    """Extract the tarball ``data`` under ``dest`` (which must exist); returns the top folder."""
    return extract_stream(io.BytesIO(data), dest, max_bytes=max_bytes)


def _mkdirs(dest: Path, target: Path) -> None:
    """Create ``target`` and its parents below ``dest``, refusing anything that is not a folder."""
    for p in reversed([target, *target.parents]):
        if p == dest or dest not in p.parents:
            continue
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            if p.is_symlink() or not p.is_dir():
                raise Invalid(f"bundle member is both a file and a folder: {p.relative_to(dest)}") from None


def _copy_member(tar: tarfile.TarFile, m: tarfile.TarInfo, target: Path) -> None:
    src = tar.extractfile(m)
    if src is None:
        raise Invalid(f"cannot read {m.name!r} from bundle")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)   # never overwrite
    with src, os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
