"""Transaction plumbing and row finders shared by the store's parts."""

from __future__ import annotations

import hashlib
import random
import re
import time
from typing import Callable, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from smartcache.catalog.engine import make_engine
from smartcache.catalog.errors import AlreadyExists, CatalogError, Invalid, NotFound, Unavailable
from smartcache.catalog.models import DatasetRow, RunRow, SiteRow

T = TypeVar("T")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_ATTEMPTS = 8


class Conflict(Exception):
    """A concurrent writer won a race the caller can simply retry (e.g. a model version)."""


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise Invalid(f"invalid {what} {name!r}: use letters, digits, '_', '-', '.' (max 128, no '/')")
    return name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class StoreBase:
    """Owns the engine; ``_tx`` runs one function in one transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> "StoreBase":
        return cls(make_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    # -- transaction plumbing -------------------------------------------------------------
    def _tx(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one transaction, retrying lock timeouts and lost races."""
        for attempt in range(_ATTEMPTS):
            try:
                with Session(self.engine, expire_on_commit=False) as s, s.begin():
                    return fn(s)
            except (Conflict, OperationalError) as e:
                if isinstance(e, OperationalError) and not _transient(e):
                    raise _unavailable(self.engine, e) from e
                if attempt == _ATTEMPTS - 1:
                    raise Unavailable(f"catalog busy: gave up after {_ATTEMPTS} attempts: {e}") from e
                time.sleep(0.05 * 2**attempt * (0.5 + random.random()))
            except ProgrammingError as e:
                raise _unavailable(self.engine, e) from e
            except IntegrityError as e:
                raise _integrity(e) from e
        raise RuntimeError("unreachable")  # pragma: no cover

    def _insert(self, s: Session):
        return (postgresql.insert if s.bind.dialect.name == "postgresql" else sqlite.insert)


def _integrity(e: IntegrityError) -> CatalogError:
    """A constraint the caller's values broke: a duplicate, or a reference to a missing row."""
    text = str(e.orig or e).lower()
    first = str(e.orig or e).strip().splitlines()[0]
    if "unique" in text or "duplicate" in text:
        return AlreadyExists(f"already in the catalog: {first}")
    if "foreign key" in text:
        return NotFound(f"refers to a row that is not in the catalog: {first}")
    return Invalid(f"rejected by the catalog: {first}")

def _transient(e: OperationalError) -> bool:
    text = str(e.orig).lower() if e.orig is not None else str(e).lower()
    return any(k in text for k in ("database is locked", "database is busy", "deadlock detected",
                                   "could not serialize", "server closed the connection"))


def _unavailable(engine: Engine, e: Exception) -> Unavailable:
    text = str(e).lower()
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return Unavailable(f"the catalog at {engine.url!r} has no schema yet: run 'smartcache db upgrade'")
    return Unavailable(f"catalog error at {engine.url!r}: {e.__class__.__name__}: {str(e).splitlines()[0]}")



def one_site(s: Session, name: str) -> SiteRow:
    row = s.scalar(select(SiteRow).where(SiteRow.name == name))
    if row is None:
        raise NotFound(f"no site named {name!r}")
    return row


def one_run(s: Session, run_id: int) -> RunRow:
    row = s.get(RunRow, run_id)
    if row is None:
        raise NotFound(f"no run {run_id}")
    return row


def one_dataset(s: Session, name: str) -> DatasetRow:
    row = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
    if row is None:
        raise NotFound(f"no dataset named {name!r}")
    return row
