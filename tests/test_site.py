"""Sites: the placement list, the XCache decision plugin and the site agent, on a real origin + XCache."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from xcache_fixtures import SITE, cached, on_disk, xrd_site  # noqa: F401  (fixture)

from smartcache.catalog import Invalid, load_config, open_store
from smartcache.tasks.push.task import push_file
from smartcache.tasks.site import demo as D
from smartcache.tasks.site import xcache as X
from smartcache.tasks.site.agent import AgentError, parse_placement_list, place_files, read_pushed_list, run_agent
from smartcache.tasks.site.contents import scan_cache
from smartcache.tasks.site.plugin import decision_params


# -- without servers ---------------------------------------------------------------------------
def test_placement_list_format():
    pl = parse_placement_list("# smartcache placement site=S model=m:3 created=2026-11-01T00:00:00+00:00 "
                              "files=2 bytes=10\n# note site=other\n\n/store/a.root\n/store/b.root 5\n/store/a.root\n")
    assert pl.lfns == ("/store/a.root", "/store/b.root")
    assert pl.header["site"] == "S" and pl.header["model"] == "m:3" and pl.header["files"] == "2"
    with pytest.raises(Invalid, match=":2: an LFN must start with '/'"):
        parse_placement_list("# h\nstore/a.root\n")


def test_pushed_list_is_checked_against_its_sidecar(tmp_path):
    local = tmp_path / "out" / "S.txt"
    local.parent.mkdir()
    local.write_text("# smartcache placement site=S\n/store/x.root\n")
    push_file(local, (tmp_path / "site").as_uri() + "/", "S")
    pl = read_pushed_list(str(tmp_path / "site") + "/", "S")
    assert pl.lfns == ("/store/x.root",)
    (tmp_path / "site" / "S.txt").write_text("# smartcache placement site=S\n/store/y.root\n")
    with pytest.raises(AgentError, match="does not match its S.txt.sha256"):
        read_pushed_list((tmp_path / "site").as_uri() + "/", "S", attempts=1)
    with pytest.raises(AgentError, match="no placement list"):
        read_pushed_list((tmp_path / "nowhere").as_uri() + "/S.txt", "S")


def test_plugin_params_and_cache_settings():
    p = decision_params(list_path=Path("/l/S.txt"), reload=2, decide_url="http://127.0.0.1:8083", site="S")
    assert "list=/l/S.txt" in p and "decide=http://127.0.0.1:8083/decide" in p and "site=S" in p
    with pytest.raises(Invalid):
        decision_params()
    with pytest.raises(Invalid, match="http://"):
        decision_params(decide_url="https://x/decide", site="S")
    assert X.CacheSettings(cache_bytes=10 * 2**20).diskusage() == \
        "0.95 0.98 files 5120k 10240k 12800k purgeinterval 60"
    assert X.CacheSettings().diskusage() == "0.95 0.98 purgeinterval 60"


# -- a real origin + XCache + plugin ------------------------------------------------------------
def test_agent_places_pushed_list_and_cache_serves_it(xrd_site, tmp_path):
    s = xrd_site
    listed, unlisted = s.lfns("agent")[:3], s.lfns("agent")[3]
    local = tmp_path / f"{SITE}.txt"
    local.write_text(f"# smartcache placement site={SITE} model=m:1 files=3\n" + "".join(f"{x}\n" for x in listed))
    push_file(local, s.list_path.parent.as_uri() + "/", SITE)          # the push: write aside, rename
    store = open_store(f"sqlite:///{tmp_path}/c.db", migrate=True)
    result = run_agent(store, SITE, s.list_path.parent.as_uri() + "/", s.cache.url, state_dir=tmp_path / "state",
                       cache_dir=s.cache_dir, concurrency=2, progress=False, plugin_reload=0)
    assert result.placement.placed == 3 and not result.placement.failed and result.ok
    assert result.placement.bytes_read == sum(s.files[x] for x in listed)
    for lfn in listed:
        assert cached(s.cache_dir, lfn)
    # a client read of a listed file is served by the cache: right bytes, nothing read at the origin
    mark = X.log_size(s.origin)
    assert s.read(s.cache, listed[0]) == s.expected(listed[0])
    assert s.origin_bytes(listed[0], mark) == 0
    # an unlisted file comes from the origin and is not cached
    decisions = X.log_size(s.cache)
    assert s.read(s.cache, unlisted) == s.expected(unlisted)
    assert s.origin_bytes(unlisted, mark) >= s.files[unlisted]
    assert s.declined(s.cache, unlisted, decisions) and not on_disk(s.cache_dir, unlisted)
    # the catalog knows what the cache holds
    ds = store.get_dataset(f"cache/{SITE}")
    assert ds.kind == "cache-contents" and ds.meta["list"]["cached"] == 3
    rows = Path(ds.uri.removeprefix("file://")).read_text().splitlines()
    assert rows[0] == "lfn,size,bytes_cached,complete,accesses"
    assert {r.split(",")[0] for r in rows[1:]} >= set(listed)
    assert ds.n_bytes >= sum(s.files[x] for x in listed)
    store.close()


def test_list_replacement_changes_decisions_without_restart(xrd_site):
    s = xrd_site
    a, b, c, _ = s.lfns("swap")
    s.write_list([a])
    decisions = X.log_size(s.cache)
    s.read(s.cache, b)
    assert s.declined(s.cache, b, decisions) and not on_disk(s.cache_dir, b)
    s.write_list([b, c])                       # a new list, same running XCache
    mark = X.log_size(s.origin)
    assert s.read(s.cache, b) == s.expected(b)
    assert cached(s.cache_dir, b)
    decisions = X.log_size(s.cache)
    s.read(s.cache, a)                         # a is no longer listed: served, not cached
    assert s.declined(s.cache, a, decisions) and not on_disk(s.cache_dir, a)
    assert s.origin_bytes(a, mark) >= s.files[a]
    assert "SmartcacheDecision: loaded 2 LFNs" in Path(s.cache.log).read_text()


def test_agent_reports_listed_files_the_cache_declined(xrd_site, tmp_path):
    s = xrd_site
    lfn = s.lfns("agent")[3]                        # on no list the plugin of cache_ask reads
    (tmp_path / "push").mkdir()
    (tmp_path / "push" / f"{SITE}.txt").write_text(f"# smartcache placement site={SITE}\n{lfn}\n")
    store = open_store(f"sqlite:///{tmp_path}/c.db", migrate=True)
    result = run_agent(store, SITE, str(tmp_path / "push") + "/", s.cache_ask.url, state_dir=tmp_path / "st",
                       cache_dir=s.data_dir(s.cache_ask), progress=False, settle_wait=1.0, plugin_reload=0)
    assert result.placement.placed == 1 and result.not_cached == (lfn,) and not result.ok
    assert store.get_dataset(f"cache/{SITE}").meta["list"]["cached"] == 0
    with pytest.raises(Invalid, match="list of site 'T1_Other'"):
        (tmp_path / "push" / f"{SITE}.txt").write_text(f"# smartcache placement site=T1_Other\n{lfn}\n")
        run_agent(store, SITE, str(tmp_path / "push") + "/", s.cache_ask.url, state_dir=tmp_path / "st",
                  plugin_reload=0)
    store.close()


def test_agent_resumes_and_reports_failures(xrd_site, tmp_path):
    s = xrd_site
    lfns = s.lfns("resume")
    s.write_list(lfns + ["/store/data/Run2026A/resume/AOD/v1/missing.root"])
    state = tmp_path / "done.txt"
    first = place_files(lfns[:2], s.cache.url, state_path=state, progress=False)
    assert first.placed == 2 and set(state.read_text().split()) == set(lfns[:2])
    again = place_files(lfns + ["/store/data/Run2026A/resume/AOD/v1/missing.root"], s.cache.url,
                        state_path=state, concurrency=3, progress=False)
    assert again.skipped == 2 and again.placed == 2
    assert list(again.failed) == ["/store/data/Run2026A/resume/AOD/v1/missing.root"]
    assert all(cached(s.cache_dir, x) for x in lfns)


def test_plugin_asks_decide_service_for_unlisted_files(xrd_site):
    s = xrd_site
    hot, cold, slow, _ = s.lfns("ask")
    data_dir = s.data_dir(s.cache_ask)
    s.service.answers.update({hot: True, cold: False, slow: "slow"})
    assert s.read(s.cache_ask, hot) == s.expected(hot)
    assert cached(data_dir, hot)
    decisions = X.log_size(s.cache_ask)
    s.read(s.cache_ask, cold)
    assert s.declined(s.cache_ask, cold, decisions) and not on_disk(data_dir, cold)
    assert (SITE, hot) in s.service.asked
    # answers are cached: opening again does not ask again
    before = s.service.questions_about(hot) + s.service.questions_about(cold)
    s.read(s.cache_ask, hot)
    s.read(s.cache_ask, cold)
    assert s.service.questions_about(hot) + s.service.questions_about(cold) == before
    # a slow service: the plugin gives up after its timeout and uses the default answer (do not cache).
    # The service holds its answer until released: a read that returns before then was not waiting for it.
    decisions = X.log_size(s.cache_ask)
    assert s.read(s.cache_ask, slow) == s.expected(slow)
    assert not s.service.release.is_set()
    s.service.release.set()
    assert s.declined(s.cache_ask, slow, decisions) and not on_disk(data_dir, slow)
    assert "decide service failed: no answer within 300 ms" in Path(s.cache_ask.log).read_text()


def test_plugin_default_answer_when_service_is_down(xrd_site):
    s = xrd_site
    lfn = s.lfns("ask")[3]
    dead = s.start_cache("cache_dead", list_path=s.base / "lists" / "none.txt", reload=1, default=True,
                         decide_url="http://127.0.0.1:9", site=SITE, timeout_ms=200)
    assert s.read(dead, lfn) == s.expected(lfn)
    assert cached(s.data_dir(dead), lfn)      # default=1: admitted although nobody answered
    assert "decide service failed" in Path(dead.log).read_text()
    dead.stop()


# -- the CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def site_cli(home):
    from smartcache.submit.cli.site import commands

    @click.group()
    @click.pass_context
    def root(ctx):
        ctx.obj = load_config()

    for c in commands:
        root.add_command(c)
    runner = CliRunner()
    return lambda *args: runner.invoke(root, list(args), catch_exceptions=False)


def test_cli_agent_against_running_cache(xrd_site, site_cli, tmp_path):
    s = xrd_site
    lfns = s.lfns("cli")[:2]
    s.write_list(lfns)
    r = site_cli("site", "agent", "--site", SITE, "--list", str(s.list_path), "--cache", s.cache.url,
                 "--cache-dir", str(s.cache_dir), "--state-dir", str(tmp_path / "st"), "--no-progress", "--json",
                 "--plugin-reload", "0")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)     # stderr may say the catalog was created
    assert out["placement"]["placed"] == 2 and out["dataset"] == f"cache/{SITE}"
    r = site_cli("site", "agent", "--site", "T1_NO_Where", "--cache", s.cache.url)
    assert r.exit_code == 1 and "has no push destination" in r.output


def test_cli_demo_site_up_agent_down(xrd_site, site_cli):
    base = xrd_site.base / "demo"
    (base / "plugin").mkdir(parents=True)
    shutil.copy2(xrd_site.lib, base / "plugin" / xrd_site.lib.name)    # reuse the session's build
    r = site_cli("site", "up", "--site", "T3_XX_Demo", "--dir", str(base), "--files", "3", "--file-size", "200kB",
                 "--reload", "0.5")
    assert r.exit_code == 0, r.output
    state = D.load_site(base)
    try:
        demo = sorted(p for p in (base / "origin" / "data").rglob("*.root"))
        lfns = ["/" + p.relative_to(base / "origin" / "data").as_posix() for p in demo]
        (base / "lists" / "T3_XX_Demo.txt").write_text("# smartcache placement site=T3_XX_Demo\n" + lfns[0] + "\n")
        r = site_cli("site", "agent", "--site", "T3_XX_Demo", "--dir", str(base), "--no-progress")
        assert r.exit_code == 0, r.output
        assert "placed    1 files" in r.output
        assert {f.lfn for f in scan_cache(Path(state["cache_dir"])).files} == {lfns[0]}
        assert "running" in site_cli("site", "status", "--site", "T3_XX_Demo", "--dir", str(base)).output
        r = site_cli("site", "up", "--site", "T3_XX_Demo", "--dir", str(base))
        assert r.exit_code == 1 and "already running" in r.output
    finally:
        r = site_cli("site", "down", "--site", "T3_XX_Demo", "--dir", str(base))
    assert "stopped T3_XX_Demo-xcache, T3_XX_Demo-origin" in r.output
    assert not X.Server(**{k: state["cache"][k] for k in ("name", "pid", "port", "config", "log")}).alive()


def test_cli_site_up_token_file_needs_the_service(tmp_path, site_cli):
    token = tmp_path / "token"
    token.write_text("t0k3n\n")
    r = site_cli("site", "up", "--site", "T3_XX_Tok", "--dir", str(tmp_path / "s"), "--token-file", str(token))
    assert r.exit_code == 2 and "--token-file needs the plugin and --decide" in r.output
    assert not (tmp_path / "s" / "site.json").exists()


def test_server_token_is_a_private_copy(tmp_path):
    # as root the copy goes to the xrootd user, who must reach it: not under pytest's private tmp folders
    site = Path(tempfile.mkdtemp(prefix="smartcache-token-"))
    try:
        site.chmod(0o755)
        src, dest = tmp_path / "mine", site / "token"
        src.write_text("  secret-token \n")
        assert D.server_token(src, dest) == dest
        assert dest.read_text() == "secret-token\n" and dest.stat().st_mode & 0o777 == 0o600
        user = X.run_as_user()
        if user is not None:
            assert dest.owner() == user
        (tmp_path / "empty").write_text("\n")
        with pytest.raises(Invalid, match="is empty"):
            D.server_token(tmp_path / "empty", dest)
    finally:
        shutil.rmtree(site, ignore_errors=True)
