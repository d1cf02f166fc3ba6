"""Pytest fixtures for tests that need the project's real HTCondor pool.

Import them from tests/conftest.py::

    from condor_fixtures import condor_pool, condor_tmp_path  # noqa: F401

``condor_pool`` (session scope) brings the pool up once, or reuses a running one, in
``$SMARTCACHE_POOL_ROOT`` (default /opt/smartcache-pool), points this process's HTCondor client at
it, and yields ``pool_env()``. A pool it started is stopped at the end of the session unless
``SMARTCACHE_POOL_KEEP=1``; a pool it found running is left alone. Where the pool cannot run
(not root, not Linux) the tests are skipped with the reason, except under CI (``CI=true``),
where that is an error: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

STARTED_HERE = pytest.StashKey[bool]()


def _no_pool(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the HTCondor pool tests, but: {reason}", pytrace=False)
    pytest.skip(reason)


def pool_started_by_this_session(config: pytest.Config) -> bool:
    """True if ``condor_pool`` started the pool (so stopping it disturbs no one else)."""
    return config.stash.get(STARTED_HERE, False)


@pytest.fixture(scope="session")
def condor_pool(request: pytest.FixtureRequest):
    from smartcache.condor import pool

    reason = pool.cannot_run_reason()
    if reason:
        _no_pool(reason)
    root = pool.pool_root()
    started_here = pool.master_pid(root) is None
    try:
        pool.pool_up(root, quiet=True)
    except pool.PoolError as e:
        _no_pool(f"cannot bring the HTCondor pool up in {root}: {e}")
    request.config.stash[STARTED_HERE] = started_here
    try:
        with pool.use_pool_config(root) as env:
            _wait_schedd_answers()
            yield env
    finally:
        if started_here and os.environ.get("SMARTCACHE_POOL_KEEP") != "1":
            pool.pool_down(root, quiet=True)


def _wait_schedd_answers(timeout: float = 60.0) -> None:
    """Until the schedd answers a job query: the collector listing it (what pool_up waits for) is
    its ad, not a promise that it takes requests yet."""
    import htcondor2
    deadline = time.monotonic() + timeout
    while True:
        try:
            htcondor2.Schedd().query(constraint="false", projection=["ClusterId"], limit=1)
            return
        except htcondor2.HTCondorException as e:
            if time.monotonic() > deadline:
                _no_pool(f"the pool's schedd did not answer a query within {timeout:g} s: {e}")
            time.sleep(0.5)


@pytest.fixture
def condor_tmp_path(condor_pool) -> Path:
    """A dir the pool's job user can enter (HTCondor checks o+x on every parent of a job's
    initialdir). Not under /tmp/pytest-of-root: any pytest session starting meanwhile resets
    that one to 0700."""
    path = Path(tempfile.mkdtemp(prefix="smartcache-pool-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
