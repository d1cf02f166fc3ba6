"""Pushing placement lists to sites: file://, http:// (a real local server), root:// (a real xrootd)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from http_fixtures import http_site  # noqa: F401  (fixture)
from xrootd_fixtures import start_origin, xrootd_origin  # noqa: F401  (fixture)

from smartcache.catalog import open_store
from smartcache.tasks.push.backends import PushError, split_target
from smartcache.tasks.push.task import push_placement, push_sites, with_retries
from smartcache.tasks.score.task import list_text

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/c.db", migrate=True)
    yield s
    s.close()


def make_placement(store, tmp_path: Path, site: str, lfns: list[str], push_uri: str | None, tag: str = "a"):
    """A list file on disk and its catalog row, as the score task leaves them."""
    try:
        store.get_site(site)
        store.update_site(site, push_uri=push_uri)
    except Exception:
        store.add_site(site, 10**12, push_uri=push_uri)
    table = pa.table({"lfn": lfns, "size": [1000] * len(lfns)})
    text = list_text(site, "cachenet:1", table, datetime(2026, 1, 1, tzinfo=timezone.utc), extra=f"tag={tag}")
    path = tmp_path / "lists" / tag / f"{site}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return store.add_placement(site, str(path), len(lfns), 1000 * len(lfns), checksum=digest), text


def lfns(n: int, prefix: str = "a") -> list[str]:
    return [f"/store/data/Run2026A/{prefix}/AOD/v1/000/{i:03d}/file{i}.root" for i in range(n)]


def sidecar_ok(text: str, sidecar: bytes, name: str) -> bool:
    return sidecar.decode() == f"{hashlib.sha256(text.encode()).hexdigest()}  {name}\n"


# -- targets and retries ------------------------------------------------------------------------
def test_split_target_folder_or_file():
    assert split_target("file:///srv/lists/", "T2_IT_Pisa") == ("file:///srv/lists", "T2_IT_Pisa.txt")
    assert split_target("file:///srv/lists", "S") == ("file:///srv/lists", "S.txt")
    assert split_target("https://h:8443/dav/pisa.txt", "S") == ("https://h:8443/dav", "pisa.txt")
    assert split_target("root://h:1094//store/lists/x.list", "S") == ("root://h:1094//store/lists", "x.list")
    with pytest.raises(PushError):
        split_target("ftp://h/x", "S")


def test_retries_back_off_then_give_up():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise PushError("transient")
        return "ok"
    assert with_retries(flaky, attempts=4, base_delay=0.5, sleep=sleeps.append) == ("ok", 3)
    assert sleeps == [0.5, 1.0]

    def broken():
        raise PushError("permanent", retryable=False)
    with pytest.raises(PushError, match="permanent"):
        with_retries(broken, attempts=4, sleep=sleeps.append)
    assert sleeps == [0.5, 1.0]  # no retry of a permanent error


# -- file:// -----------------------------------------------------------------------------------
def test_file_push_atomic_checksummed_idempotent(store, tmp_path):
    dest = tmp_path / "site"
    p, text = make_placement(store, tmp_path, "T2_IT_Pisa", lfns(50), f"file://{dest}/")
    r = push_placement(store, p)
    assert r.ok and r.changed and r.destination == f"file://{dest}/T2_IT_Pisa.txt"
    assert (dest / "T2_IT_Pisa.txt").read_text() == text
    assert sidecar_ok(text, (dest / "T2_IT_Pisa.txt.sha256").read_bytes(), "T2_IT_Pisa.txt")
    assert sorted(x.name for x in dest.iterdir()) == ["T2_IT_Pisa.txt", "T2_IT_Pisa.txt.sha256"]  # no temp left
    row = store.latest_placement("T2_IT_Pisa")
    assert row.push_status == "pushed" and row.pushed is not None

    mtime = (dest / "T2_IT_Pisa.txt").stat().st_mtime_ns
    again = push_placement(store, row)
    assert again.ok and not again.changed
    assert (dest / "T2_IT_Pisa.txt").stat().st_mtime_ns == mtime          # nothing rewritten
    assert store.latest_placement("T2_IT_Pisa") == row                    # catalog row untouched
    assert len(store.list_placements("T2_IT_Pisa")) == 1


def test_file_push_replaces_with_new_list(store, tmp_path):
    dest = tmp_path / "site"
    p1, _ = make_placement(store, tmp_path, "S1", lfns(5), f"file://{dest}/", tag="a")
    assert push_placement(store, p1).ok
    p2, text2 = make_placement(store, tmp_path, "S1", lfns(7, "b"), f"file://{dest}/", tag="b")
    r = push_placement(store, p2)
    assert r.ok and r.changed
    assert (dest / "S1.txt").read_text() == text2
    assert sidecar_ok(text2, (dest / "S1.txt.sha256").read_bytes(), "S1.txt")


def test_corrupt_local_list_is_refused_and_old_list_kept(store, tmp_path):
    dest = tmp_path / "site"
    p1, text1 = make_placement(store, tmp_path, "S1", lfns(5), f"file://{dest}/", tag="a")
    assert push_placement(store, p1).ok
    p2, _ = make_placement(store, tmp_path, "S1", lfns(9, "b"), f"file://{dest}/", tag="b")
    Path(p2.uri).write_text("# truncated\n/store/data/x.root\n")   # damaged after the catalog row was written
    r = push_placement(store, p2)
    assert not r.ok and "checksum" in r.error
    assert (dest / "S1.txt").read_text() == text1
    row = store.latest_placement("S1")
    assert row.id == p2.id and row.push_status == "failed" and "checksum" in row.push_message


def test_site_without_destination_fails_clearly(store, tmp_path):
    p, _ = make_placement(store, tmp_path, "S1", lfns(3), None)
    r = push_placement(store, p)
    assert not r.ok and "no push destination" in r.error
    assert store.latest_placement("S1").push_status == "failed"


def test_push_sites_retries_a_failed_push(store, tmp_path):
    dest = tmp_path / "site"
    p, text = make_placement(store, tmp_path, "S1", lfns(4), None)
    assert push_sites(store, ["S1"])[0].ok is False
    store.update_site("S1", push_uri=f"file://{dest}/")
    (r,) = push_sites(store, ["S1"])
    assert r.ok and r.placement_id == p.id and (dest / "S1.txt").read_text() == text
    assert store.latest_placement("S1").push_status == "pushed"


# -- http:// -----------------------------------------------------------------------------------
def test_http_push_uses_put_verify_move(store, tmp_path, http_site):
    p, text = make_placement(store, tmp_path, "T2_US_UCSD", lfns(20), f"{http_site.url}/lists/")
    r = push_placement(store, p, base_delay=0.01)
    assert r.ok and r.changed
    assert (http_site.root / "lists" / "T2_US_UCSD.txt").read_text() == text
    assert sidecar_ok(text, (http_site.root / "lists" / "T2_US_UCSD.txt.sha256").read_bytes(), "T2_US_UCSD.txt")
    methods = [m for m, _, _ in http_site.state.log]
    assert "MOVE" in methods and methods.index("PUT") < methods.index("MOVE")
    assert sorted(x.name for x in (http_site.root / "lists").iterdir()) == ["T2_US_UCSD.txt", "T2_US_UCSD.txt.sha256"]

    n = len(http_site.state.log)
    again = push_placement(store, store.latest_placement("T2_US_UCSD"), base_delay=0.01)
    assert again.ok and not again.changed
    assert {m for m, _, _ in http_site.state.log[n:]} == {"GET"}          # idempotent: nothing sent


def test_http_push_retries_transient_errors(store, tmp_path, http_site):
    http_site.state.fail_next["PUT"] = 2
    p, text = make_placement(store, tmp_path, "S1", lfns(10), f"{http_site.url}/d/S1.txt")
    r = push_placement(store, p, base_delay=0.01)
    assert r.ok and r.attempts == 3
    assert (http_site.root / "d" / "S1.txt").read_text() == text


def test_http_failed_push_leaves_previous_list(store, tmp_path, http_site):
    p1, text1 = make_placement(store, tmp_path, "S1", lfns(10), f"{http_site.url}/d/", tag="a")
    assert push_placement(store, p1, base_delay=0.01).ok
    http_site.state.corrupt_puts = True           # the site mangles uploads: verification must catch it
    p2, _ = make_placement(store, tmp_path, "S1", lfns(12, "b"), f"{http_site.url}/d/", tag="b")
    r = push_placement(store, p2, attempts=2, base_delay=0.01)
    assert not r.ok and "checksum mismatch" in r.error and r.attempts == 2
    assert (http_site.root / "d" / "S1.txt").read_text() == text1
    assert sidecar_ok(text1, (http_site.root / "d" / "S1.txt.sha256").read_bytes(), "S1.txt")
    assert sorted(x.name for x in (http_site.root / "d").iterdir()) == ["S1.txt", "S1.txt.sha256"]
    assert store.latest_placement("S1").push_status == "failed"


def test_http_server_without_move_gets_a_direct_put(store, tmp_path, http_site):
    http_site.state.allow_move = False
    p, text = make_placement(store, tmp_path, "S1", lfns(3), f"{http_site.url}/d/")
    assert push_placement(store, p, base_delay=0.01).ok
    assert (http_site.root / "d" / "S1.txt").read_text() == text
    assert sorted(x.name for x in (http_site.root / "d").iterdir()) == ["S1.txt", "S1.txt.sha256"]


# -- root:// (a real xrootd origin) --------------------------------------------------------------
def test_xrootd_push_atomic_and_idempotent(store, tmp_path, xrootd_origin):
    uri = f"{xrootd_origin.url}//store/lists/"
    p, text = make_placement(store, tmp_path, "T2_IT_Bari", lfns(30), uri)
    r = push_placement(store, p)
    assert r.ok and r.changed, r.error
    on_disk = xrootd_origin.local("/store/lists/T2_IT_Bari.txt")
    assert on_disk.read_text() == text
    assert sidecar_ok(text, xrootd_origin.local("/store/lists/T2_IT_Bari.txt.sha256").read_bytes(), "T2_IT_Bari.txt")
    assert sorted(x.name for x in on_disk.parent.iterdir()) == ["T2_IT_Bari.txt", "T2_IT_Bari.txt.sha256"]
    ino = on_disk.stat().st_ino
    again = push_placement(store, store.latest_placement("T2_IT_Bari"))
    assert again.ok and not again.changed and on_disk.stat().st_ino == ino

    p2, text2 = make_placement(store, tmp_path, "T2_IT_Bari", lfns(31, "b"), uri, tag="b")
    assert push_placement(store, p2).ok
    assert on_disk.read_text() == text2


def test_xrootd_down_push_fails_and_old_list_survives(store, tmp_path, xrootd_origin):
    uri = f"{xrootd_origin.url}//store/lists/"
    p1, text1 = make_placement(store, tmp_path, "S1", lfns(8), uri, tag="a")
    assert push_placement(store, p1).ok
    xrootd_origin.stop()
    p2, _ = make_placement(store, tmp_path, "S1", lfns(9, "b"), uri, tag="b")
    r = push_placement(store, p2, attempts=2, base_delay=0.01)
    assert not r.ok
    assert store.latest_placement("S1").push_status == "failed"
    assert xrootd_origin.local("/store/lists/S1.txt").read_text() == text1
    # the site comes back (same data, same port): `smartcache push` then delivers the new list
    origin = start_origin(xrootd_origin.workdir, port=xrootd_origin.port)
    try:
        (r2,) = push_sites(store, ["S1"])
        assert r2.ok and r2.changed
        assert xrootd_origin.local("/store/lists/S1.txt").read_text() == Path(p2.uri).read_text()
    finally:
        origin.stop()


# -- `smartcache push` ---------------------------------------------------------------------------
def test_push_command(home, tmp_path):
    import click
    from click.testing import CliRunner

    from smartcache.catalog import load_config
    from smartcache.submit.cli.model import commands

    @click.group()
    @click.pass_context
    def group(ctx):
        ctx.obj = load_config()
    for c in commands:
        group.add_command(c)
    store = open_store(load_config().catalog_url, migrate=True)
    dest = tmp_path / "site"
    make_placement(store, tmp_path, "S1", lfns(3), f"file://{dest}/")
    make_placement(store, tmp_path, "S2", lfns(3, "b"), None)
    run = CliRunner().invoke
    r = run(group, ["push", "S1"])
    assert r.exit_code == 0, r.output
    assert "pushed" in r.output and (dest / "S1.txt").is_file()
    r = run(group, ["push", "S1", "--json"])
    assert r.exit_code == 0 and '"changed": false' in r.output
    r = run(group, ["push", "S2"])
    assert r.exit_code == 1 and "1 push(es) failed" in r.output and "Traceback" not in r.output
    r = run(group, ["push", "nosuch"])
    assert r.exit_code == 1 and "nosuch" in r.output and "Traceback" not in r.output
    store.close()
