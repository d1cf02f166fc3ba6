"""Shared fixtures: a catalog on SQLite and (when a server is given) PostgreSQL, a CLI runner."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from smartcache.catalog import open_store

from condor_fixtures import condor_pool, condor_tmp_path  # noqa: F401,E402 - the real HTCondor pool

try:
    # The XRootD client library crashes the process if it loads after TensorFlow (the other
    # order is fine): load it first, whichever test happens to import TensorFlow.
    import XRootD.client  # noqa: F401
except ImportError:  # pragma: no cover - the xrootd client is an install requirement
    pass

PG_ENV = "SMARTCACHE_TEST_PG_URL"


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url and os.environ.get("CI"):
        pytest.fail(f"CI must provide a PostgreSQL server in {PG_ENV} (tests/run.sh starts one)")
    return url


@pytest.fixture(scope="session")
def pg_admin_url():
    url = _pg_admin_url()
    if not url:
        pytest.skip(f"no PostgreSQL server: set {PG_ENV} (tests/run.sh starts one on 127.0.0.1)")
    _wait_answering(url)
    return url


def _wait_answering(url: str, timeout: float = 60.0) -> None:
    """Until the server answers a query: what proves it serves (not a pid file or a log line)."""
    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect() as c:
                    c.execute(text("SELECT 1"))
                return
            except OperationalError as e:
                if time.monotonic() > deadline:
                    pytest.fail(f"PostgreSQL at {url} did not answer within {timeout:g} s: {e}")
                time.sleep(0.2)
    finally:
        engine.dispose()


@pytest.fixture
def pg_url(pg_admin_url):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield pg_admin_url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/catalog.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(catalog_url):
    s = open_store(catalog_url, migrate=True)
    yield s
    s.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated SMARTCACHE_HOME, with no SMARTCACHE_* variables leaking in from the caller."""
    for var in [v for v in os.environ if v.startswith("SMARTCACHE_") and v != PG_ENV]:
        monkeypatch.delenv(var)
    h = tmp_path / "home"
    monkeypatch.setenv("SMARTCACHE_HOME", str(h))
    return h


@pytest.fixture
def cli(home):
    """Invoke the real ``smartcache`` click group in-process; returns the click Result."""
    from smartcache.submit.cli import cli as group
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(group, list(args), input=input, catch_exceptions=False)
    return invoke
