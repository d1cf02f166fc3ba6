"""File-system errors a user can cause, as one line: ``cannot write <what> <path>: <reason>``.

A command checks the files it will write before the work (:func:`check_writable`: a folder that is
a file, no permission, a read-only file system) and wraps the writing in :func:`writing`, which
turns what still fails then (a full disk) into a :class:`FileError`. The CLI turns any other
OSError into the same kind of line (:func:`os_error_line`), so no path ends in a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

from smartcache.catalog.errors import SmartcacheError


class FileError(SmartcacheError):
    """A file or folder the user named cannot be written (or read)."""


def root_os_error(e: OSError) -> OSError:
    """The first OSError of a chain: a failed cleanup (``except: unlink(tmp); raise``) raises its own
    error with the real cause as its context, and the cause is what the user must fix."""
    found, seen = e, set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError):
            found = cur
        cur = cur.__cause__ or cur.__context__
    return found


def reason(e: OSError) -> str:
    """Why, in words, with the path that is in the way when it is not the one named."""
    if e.errno in (errno.ENOTDIR, errno.EEXIST) and e.filename:
        blocker = _file_in_the_way(Path(os.fsdecode(e.filename)))
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    return e.strerror or str(e)


def os_error_line(e: OSError, what: str | None = None, path: Path | str | None = None) -> str:
    """``<what> <path>: <reason>``; without ``what``/``path``: ``cannot use <the failing path>: <reason>``."""
    root = root_os_error(e)
    if path is None:
        path = os.fsdecode(root.filename) if root.filename is not None else None
    head = what or ("cannot use" if path is not None else "file system error")
    return f"{head} {path}: {reason(root)}" if path is not None else f"{head}: {reason(root)}"


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) when it is not a folder."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def check_writable(what: str, path: Path | str, *, folder: bool = False) -> None:
    """Raise :class:`FileError` now if ``path`` (a file, or with ``folder`` a folder that may not exist
    yet) could not be written: root passes permission bits, so check what stops it too."""
    path = Path(path)
    label = f"cannot write {what}"
    if folder and path.exists() and not path.is_dir():
        raise FileError(f"{label} {path}: {path} is a file, not a folder")
    if not folder and path.is_dir():
        raise FileError(f"{label} {path}: it is a folder")
    start = path if folder else path.parent
    existing = next((p for p in (start, *start.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise FileError(f"{label} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        readonly = os.statvfs(existing).f_flag & os.ST_RDONLY
        why = "read-only file system" if readonly else "permission denied"
        raise FileError(f"{label} {path}: {existing} is not writable ({why})")


@contextlib.contextmanager
def writing(what: str, path: Path | str) -> Iterator[None]:
    """OSErrors about ``path`` (itself, a folder above it, a file in it, a ``.part`` beside it, or a
    write with no file name -- a full disk) become ``cannot write <what> <path>: <reason>``."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        root = root_os_error(e)
        if not _concerns(root, Path(path)):
            raise
        raise FileError(os_error_line(root, f"cannot write {what}", path)) from e


def _concerns(e: OSError, path: Path) -> bool:
    if e.filename is None:
        return True
    failed = Path(os.fsdecode(e.filename)).absolute()
    target = path.absolute()
    return (failed == target or failed in target.parents or target in failed.parents
            or (failed.parent == target.parent and failed.name.startswith(target.name)))
