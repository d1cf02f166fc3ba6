"""The project's single-machine HTCondor pool: script, wrapper, CLI, and (marked condor) the real thing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from condor_fixtures import pool_started_by_this_session  # fixtures come from conftest.py (one session-wide pool)

from smartcache.catalog.config import load_config
from smartcache.condor import pool
from smartcache.condor.autoscale_log import append_decision, read_decisions
from smartcache.submit.cli.pool import commands

SCRIPT = pool.SCRIPT
CONFIG = SCRIPT.parent / "pool.config"


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCACHE_")}
    return subprocess.run(["bash", str(SCRIPT), *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def cli(home: Path, *args: str):
    group = click.Group(commands={c.name: c for c in commands})
    return CliRunner().invoke(group, ["pool", *args], obj=load_config(env={}, home=home))


# -- no root needed ------------------------------------------------------------------------
def test_script_is_valid_bash_and_lists_usage():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    out = run_script()
    assert out.returncode == 2
    for word in ("up", "down", "status", "env", "SMARTCACHE_POOL_ROOT"):
        assert word in out.stdout


def test_binds_drop_dirs_inside_other_binds(tmp_path):
    outer, inner, other = tmp_path / "repo", tmp_path / "repo" / ".venv", Path(sys.base_prefix)
    inner.mkdir(parents=True)
    out = run_script("binds", env={"SMARTCACHE_POOL_REPO": str(outer), "SMARTCACHE_HOME": str(inner),
                                   "SMARTCACHE_POOL_BINDS": f"{inner} /does/not/exist /usr /",
                                   "SMARTCACHE_POOL_PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    dirs = out.stdout.split()
    # tmp_path is under /tmp, which is bound already: nothing below it is bound again
    assert "/tmp" in dirs and str(outer) not in dirs and str(inner) not in dirs
    assert str(other.resolve()) in dirs or any(str(other.resolve()).startswith(d + "/") for d in dirs)
    assert "/does/not/exist" not in dirs
    assert "/usr" not in dirs and "/" not in dirs           # never hide the chroot's own system
    assert len(dirs) == len(set(dirs))


def test_env_command_points_into_the_chroot(tmp_path):
    out = run_script("env", env={"SMARTCACHE_POOL_ROOT": str(tmp_path / "pool")})
    assert f"CONDOR_CONFIG={tmp_path / 'pool'}/etc/condor/condor_config" in out.stdout
    assert "/usr/local/bin" in out.stdout


def test_settings_of_an_existing_pool_persist_unless_given_again(tmp_path):
    out = run_script("settings", env={"SMARTCACHE_POOL_ROOT": str(tmp_path)})
    assert "port=9618 cpus=4" in out.stdout and "user=smartcache uid=2000" in out.stdout
    (tmp_path / "etc" / "condor").mkdir(parents=True)
    (tmp_path / "etc" / "condor" / "condor_config").write_text(
        "SMARTCACHE_POOL_PORT  = 9777\nSMARTCACHE_POOL_CPUS = 2\nMEMORY = 3000\n")
    out = run_script("settings", env={"SMARTCACHE_POOL_ROOT": str(tmp_path)})
    assert "port=9777 cpus=2 memory=3000" in out.stdout, out.stdout + out.stderr
    out = run_script("settings", env={"SMARTCACHE_POOL_ROOT": str(tmp_path), "SMARTCACHE_POOL_PORT": "9778"})
    assert "port=9778 cpus=2" in out.stdout


def test_pool_env_and_root(tmp_path):
    env = pool.pool_env(tmp_path / "p", env={"PATH": "/usr/bin:/bin"})
    assert env["CONDOR_CONFIG"] == str(tmp_path / "p" / "etc" / "condor" / "condor_config")
    assert env["PATH"].split(os.pathsep)[0] == "/usr/local/bin"
    assert pool.pool_env(tmp_path, env={"PATH": "/usr/local/bin:/bin"})["PATH"] == "/usr/local/bin:/bin"
    assert pool.pool_root(env={"SMARTCACHE_POOL_ROOT": str(tmp_path)}) == tmp_path
    assert pool.pool_root(env={}) == pool.DEFAULT_ROOT


def test_config_is_loopback_only_and_claims_the_job_user():
    text = CONFIG.read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.lstrip().startswith("#"))
    settings = {k.strip(): v.strip() for k, v in settings.items()}
    assert settings["NETWORK_INTERFACE"] == "127.0.0.1"
    assert settings["BIND_ALL_INTERFACES"] == "False"
    assert settings["SEC_DEFAULT_AUTHENTICATION_METHODS"] == "CLAIMTOBE"
    assert settings["SEC_CLAIMTOBE_USER"] == "$(SMARTCACHE_POOL_USER)"
    assert settings["DAGMAN_USE_STRICT"] == "0"
    assert settings["SCHEDD_NAME"]
    assert settings["COLLECTOR_HOST"].startswith("127.0.0.1:")


def test_status_of_a_missing_pool(tmp_path):
    st = pool.pool_status(tmp_path / "nothing")
    assert (st.installed, st.running, st.ready, st.master_pid, st.mounts) == (False, False, False, None, ())


def test_master_pid_ignores_stale_and_foreign_pids(tmp_path):
    run = tmp_path / pool.STATE_DIR / "run"
    run.mkdir(parents=True)
    (run / "master.pid").write_text("999999999\n")
    assert pool.master_pid(tmp_path) is None
    (run / "master.pid").write_text(f"{os.getpid()}\n")    # alive, but not chrooted in tmp_path
    if os.geteuid() == 0:
        assert pool.master_pid(tmp_path) is None


def test_cli_env_and_status_without_pool(tmp_path):
    res = cli(tmp_path, "env", "--root", str(tmp_path / "p"))
    assert res.exit_code == 0 and f"CONDOR_CONFIG={tmp_path / 'p'}/etc/condor/condor_config" in res.output
    append_decision(tmp_path, {"time": "t1", "target": 2, "reason": "r"})
    res = cli(tmp_path, "status", "--root", str(tmp_path / "p"), "--json")
    data = json.loads(res.output)
    assert data["running"] is False and data["autoscale"][-1]["target"] == 2


def test_decision_log_tail_skips_torn_lines(tmp_path):
    for i in range(15):
        append_decision(tmp_path, {"i": i})
    with (tmp_path / "pool" / "autoscale.jsonl").open("a") as f:
        f.write('{"i": 99, "cut sho')
    assert [d["i"] for d in read_decisions(tmp_path, 3)] == [12, 13, 14]


# -- the real pool (root) ------------------------------------------------------------------
NODE = """import os, pathlib, sys
name = sys.argv[1]
if name == "B" and not pathlib.Path("A.txt").exists():
    sys.exit("A.txt missing: B ran before A")
pathlib.Path(name + ".txt").write_text(f"{name} {os.getuid()}")
"""


@pytest.mark.condor
def test_pool_is_up_with_slots_and_schedd(condor_pool):
    st = pool.pool_status()
    assert st.ready, st
    assert os.environ["CONDOR_CONFIG"] == condor_pool["CONDOR_CONFIG"]
    assert Path(condor_pool["CONDOR_CONFIG"]).is_file()
    # a partitionable slot; its free CPUs may all be carved into dynamic slots by jobs of a shared pool
    assert any(s.partitionable for s in st.slots)
    assert sum(s.cpus for s in st.slots if s.partitionable or s.dynamic) >= 1
    assert any(m.startswith(str(st.root) + "/tmp") for m in st.mounts)
    assert Path("/usr/local/bin/condor_dagman").exists()


@pytest.mark.condor
def test_two_node_dag_runs_from_the_host_bindings(condor_pool, condor_tmp_path):
    htcondor2 = pytest.importorskip("htcondor2")
    d = condor_tmp_path
    (d / "node.py").write_text(NODE)
    for name in "AB":
        (d / f"{name}.sub").write_text(
            f"executable = {sys.executable}\narguments = node.py {name}\n"
            f"output = {name}.out\nerror = {name}.err\nlog = {name}.log\n"
            "request_cpus = 1\nrequest_memory = 64M\nrequest_disk = 1M\nqueue\n")
    (d / "two.dag").write_text("JOB A A.sub\nJOB B B.sub\nPARENT A CHILD B\n")
    schedd = htcondor2.Schedd()
    t0 = time.monotonic()
    sub = htcondor2.Submit.from_dag(str(d / "two.dag"), {"force": True, "usedagdir": True})
    cluster = schedd.submit(sub).cluster()
    while True:
        jobs = schedd.query(constraint=f"ClusterId == {cluster} || DAGManJobId == {cluster}",
                            projection=["ClusterId", "JobStatus", "HoldReason"])
        if not jobs:
            break
        assert not [j for j in jobs if j.get("JobStatus") == 5], jobs
        assert time.monotonic() - t0 < 180, f"DAG still running: {jobs}"
        time.sleep(0.5)
    assert (d / "B.txt").read_text() == "B 2000"           # ran after A, as the job user
    assert "EXITING WITH STATUS 0" in (d / "two.dag.dagman.out").read_text()


@pytest.mark.condor
def test_cli_up_is_idempotent_and_status_reports(condor_pool, tmp_path):
    before = pool.master_pid()
    res = cli(tmp_path, "up", "--quiet")
    assert res.exit_code == 0, res.output
    assert pool.master_pid() == before                       # reused, not restarted
    assert (pool.pool_root() / str(tmp_path).lstrip("/")).is_dir()   # home visible in the chroot
    res = cli(tmp_path, "status", "--json")
    data = json.loads(res.output)
    assert data["ready"] and data["master_pid"] == before and data["slots"]


@pytest.mark.condor
def test_down_unmounts_everything_and_up_restores(condor_pool, request):
    if not pool_started_by_this_session(request.config):
        pytest.skip("the pool was running before this session: someone else may be using it")
    root = pool.pool_root()
    pool.pool_down(root, quiet=True)
    assert pool.master_pid(root) is None
    assert pool.mounts_under(root) == ()
    assert (root / "usr/sbin/condor_master").exists()        # the chroot is kept
    assert Path("/tmp").is_dir() and any(Path("/tmp").iterdir())   # and the host's /tmp untouched
    st = pool.pool_up(root, quiet=True)
    assert st.ready
