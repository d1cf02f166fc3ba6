"""DAGs on the project's real HTCondor pool (DAGMan): completion, retries, rescue + resume, status vs condor_q."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dagkit import counts, noop_workflow
from smartcache.catalog import load_config
from smartcache.condor import dag as dagmod
from smartcache.condor import pool, schedd, status
from smartcache.submit import runs as R
from smartcache.submit.workflows import Plan

pytestmark = [pytest.mark.condor, pytest.mark.slow]
TIMEOUT = 180


@pytest.fixture
def dag_tmp(condor_pool):
    """A dir the pool's job user can enter, outside /tmp/pytest-of-root: any pytest session that
    starts meanwhile (another developer's, say) resets that one to 0700 and the jobs lose it."""
    path = Path(tempfile.mkdtemp(prefix="smartcache-dag-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cfg(dag_tmp, monkeypatch):
    """Config with a home the jobs can use; DAGs a test leaves in the queue are removed after it."""
    for var in [v for v in os.environ if v.startswith("SMARTCACHE_") and v != "SMARTCACHE_POOL_ROOT"]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("SMARTCACHE_HOME", str(dag_tmp / "home"))
    monkeypatch.setenv("SMARTCACHE_EXECUTOR", "condor")
    cfg = load_config()
    yield cfg
    store = R.open_catalog(cfg)
    for run in store.list_runs():
        if run.cluster_id and schedd.query_jobs(f"ClusterId == {run.cluster_id}", ["ClusterId"], cfg):
            schedd.remove(run.cluster_id, cfg, reason="test teardown")
    store.close()


@pytest.fixture
def invoke(cfg):
    from smartcache.submit.cli import cli as group   # the real command line
    return lambda *args: CliRunner().invoke(group, list(args))


def wait_until(fn, what: str, timeout: float = TIMEOUT, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def condor_q(*args: str) -> str:
    """The pool's real condor_q, run inside its chroot."""
    env = {**os.environ, "SMARTCACHE_POOL_ROOT": str(pool.pool_root())}
    out = subprocess.run(["bash", str(pool.SCRIPT), "exec", "condor_q", *args], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def start(cfg, out, **kw):
    store = R.open_catalog(cfg)
    plan = Plan("noop", {}, lambda run_id: noop_workflow(out, run_id=run_id, catalog_url=cfg.catalog_url, **kw))
    run, dag_file = R.create(cfg, store, plan, "condor")
    return store, R.launch(cfg, store, run, executor="condor", wait=False), dag_file


def test_dag_completes_through_dagman_and_retries_a_node(cfg, dag_tmp):
    out = dag_tmp / "out"
    store, run, dag_file = start(cfg, out, fan_out=2, retries=2, flags={1: ["--fail-times", "1"]})
    assert run.executor == "condor" and run.cluster_id and run.status == "submitted"

    def names():
        return condor_q("-af", "JobBatchName", "SmartcacheTask", "SmartcachePartition", "-constraint",
                        f"DAGManJobId == {run.cluster_id}").split("\n")
    seen = wait_until(lambda: [ln for ln in names() if ln.strip()], "node jobs in condor_q")
    assert f"smartcache-noop-{run.id} noop p0" in seen or f"smartcache-noop-{run.id} noop p1" in seen
    assert f"smartcache-noop-{run.id}" in condor_q("-batch")

    run = R.follow(cfg, store, run.id, progress=False)
    assert run.status == "done", run.message
    nodes = {n.node: n for n in store.run_nodes(run.id)}
    assert all(n.status == "done" for n in nodes.values())
    assert nodes["first-001"].retries == 1 and nodes["first-000"].retries == 0
    assert counts(out) == {"first-000": 1, "first-001": 2, "last-000": 1}
    assert (out / "last-000.txt").read_text() == "last-000\nfirst-000\nfirst-001\n"
    assert store.get_dataset("noop/last-000").run_id == run.id          # the node registered its output
    assert status.read_metrics(dag_file)["exitcode"] == 0


def test_failed_node_leaves_a_rescue_dag_that_resume_completes(cfg, dag_tmp, invoke):
    out, cause = dag_tmp / "out", dag_tmp / "cause"
    cause.write_text("broken")
    store, run, dag_file = start(cfg, out, fan_out=2, retries=1, flags={1: ["--fail-while", str(cause)]})
    first_cluster = run.cluster_id
    run = R.follow(cfg, store, run.id, progress=False)
    assert run.status == "failed" and "first-001" in run.message
    assert dagmod.rescue_files(dag_file) and dagmod.rescued(dag_file) == {"first-000"}   # DAGMan's own
    shown = json.loads(invoke("status", str(run.id), "--json").output)
    by_node = {n["node"]: n for n in shown["nodes"]}
    assert by_node["first-001"]["status"] == "failed" and by_node["first-001"]["retries"] == 1
    assert by_node["last-000"]["status"] == "idle"

    cause.unlink()                                                          # fix the cause
    res = invoke("resume", str(run.id), "--wait", "--no-progress")
    assert res.exit_code == 0, res.output
    run = store.get_run(run.id)
    assert run.status == "done" and run.cluster_id != first_cluster
    assert counts(out) == {"first-000": 1, "first-001": 3, "last-000": 1}   # first-000 did not run again


def test_status_shows_what_condor_q_shows(cfg, dag_tmp, invoke):
    out = dag_tmp / "out"
    store, run, dag_file = start(cfg, out, fan_out=1, retries=0, sleep=120)

    def node_status():
        shown = json.loads(invoke("status", str(run.id), "--json").output)
        return {n["node"]: n for n in shown["nodes"]}["first-000"]

    def q():
        return condor_q("-af", "DAGNodeName", "JobStatus", "HoldReason", "-constraint",
                        f"DAGManJobId == {run.cluster_id}").split()
    idle_or_running = wait_until(lambda: q()[:2] if q() else None, "the node job in condor_q")
    assert idle_or_running[0] == "first-000"
    wait_until(lambda: q()[1:2] == ["2"], "the node job running")
    assert node_status()["status"] == "running"

    schedd.connect(cfg).act(schedd.htcondor2.JobAction.Hold, f"DAGManJobId == {run.cluster_id}",
                            reason=("held by the test", 0))
    wait_until(lambda: q()[1:2] == ["5"], "the node job held")
    reason = condor_q("-af", "HoldReason", "-constraint", f"DAGManJobId == {run.cluster_id}").strip()
    assert reason.startswith("held by the test")
    held = node_status()
    assert held["status"] == "held" and held["message"] == reason
    from_log = wait_until(lambda: [n for n in status.collect(dag_file).nodes if n.status == "held"],
                          "the hold in the node log (no schedd)")
    assert from_log[0].message == reason

    res = invoke("cancel", str(run.id))
    assert res.exit_code == 0, res.output
    wait_until(lambda: not schedd.query_jobs(f"ClusterId == {run.cluster_id} || DAGManJobId == {run.cluster_id}",
                                             ["ClusterId"], cfg), "the DAG to leave the queue")
    assert store.get_run(run.id).status == "cancelled"
    assert wait_until(lambda: dagmod.rescue_files(dag_file), "DAGMan's rescue file after removal")


def test_reduce_dag_over_generated_days_registers_its_outputs(cfg):
    from smartcache.submit.cli import cli as group
    runner = CliRunner()
    gen = runner.invoke(group, ["generate", "logs", "--months", "1", "--end", "2026-10", "--scale", "0.05",
                                "--no-progress"])
    assert gen.exit_code == 0, gen.output
    res = runner.invoke(group, ["submit", "reduce", "--months", "1", "--end", "2026-10", "--chunk", "8",
                                "--wait", "--no-progress"])                     # executor from the config: condor
    assert res.exit_code == 0, res.output
    store = R.open_catalog(cfg)
    run = store.list_runs()[0]
    assert (run.status, run.executor) == ("done", "condor") and run.cluster_id
    reduced = store.list_datasets(prefix="reduced/")
    assert len(reduced) == 31 and all(d.run_id == run.id for d in reduced)
    assert store.get_dataset("features/2026-10-01_2026-10-31").run_id == run.id
    hist = schedd.history(f"DAGManJobId == {run.cluster_id}", ["SmartcacheTask", "SmartcachePartition"], cfg,
                          match=10)
    assert {(h["SmartcacheTask"], h["SmartcachePartition"]) for h in hist} >= {
        ("reduce", "2026-10-01..2026-10-08"), ("features", "2026-10-01..2026-10-31")}
