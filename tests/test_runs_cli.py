"""Runs in the catalog and the ``submit``/``runs``/``status``/``resume``/``cancel`` commands (local executor)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from click.testing import CliRunner

from dagkit import counts, noop_workflow
from smartcache.catalog import load_config
from smartcache.catalog.config import CondorConfig
from smartcache.condor import dag as dagmod
from smartcache.condor import local
from smartcache.submit import runs as R
from smartcache.submit.workflows import Plan


@pytest.fixture
def cfg(home):
    return load_config()


@pytest.fixture
def invoke(home):
    from smartcache.submit.cli import cli as group   # the real command line

    def run(*args: str):
        return CliRunner().invoke(group, list(args))
    return run


def noop_plan(cfg, out, register: bool = False, **kw) -> Plan:
    url = cfg.catalog_url if register else None
    return Plan("noop", {"test": True}, lambda run_id: noop_workflow(out, run_id=run_id, catalog_url=url, **kw))


def test_failed_run_is_in_the_catalog_and_resume_completes_it(cfg, tmp_path, invoke):
    out, cause = tmp_path / "out", tmp_path / "cause"
    cause.write_text("broken")
    store = R.open_catalog(cfg)
    run, dag_file = R.create(cfg, store, noop_plan(cfg, out, register=True, fan_out=3, retries=1,
                                                   flags={1: ["--fail-while", str(cause)]}), "local")
    assert dag_file.parent.parent == cfg.runs_dir and run.dag_dir == str(dag_file.parent)
    run = R.launch(cfg, store, run, executor="local", wait=True, progress=False)
    assert run.status == "failed" and "first-001" in run.message and run.finished is not None
    nodes = {n.node: n for n in store.run_nodes(run.id)}
    assert nodes["first-001"].status == "failed" and nodes["first-001"].retries == 1
    assert nodes["first-000"].status == "done" and nodes["last-000"].status == "idle"
    assert store.get_dataset("noop/first-000").run_id == run.id    # tasks register their outputs

    res = invoke("status", str(run.id))
    assert res.exit_code == 0, res.output
    assert f"run {run.id} (noop) failed on local" in res.output
    row = next(ln for ln in res.output.splitlines() if ln.startswith("first-001"))
    assert " p1 " in row and " failed " in row and "failing while" in row
    listed = json.loads(invoke("runs", "--json").output)
    assert listed[0]["id"] == run.id and (listed[0]["nodes_done"], listed[0]["nodes"]) == (2, 4)

    cause.unlink()
    res = invoke("resume", str(run.id), "--executor", "local", "--wait", "--no-progress")
    assert res.exit_code == 0, res.output
    assert R.open_catalog(cfg).get_run(run.id).status == "done"
    assert counts(out) == {"first-000": 1, "first-001": 3, "first-002": 1, "last-000": 1}
    assert all(n.status == "done" for n in R.open_catalog(cfg).run_nodes(run.id))
    assert invoke("resume", str(run.id)).exit_code == 1          # nothing left to resume


def test_background_run_can_be_cancelled_and_resumed(cfg, tmp_path, invoke):
    out = tmp_path / "out"
    store = R.open_catalog(cfg)
    run, dag_file = R.create(cfg, store, noop_plan(cfg, out, fan_out=3, max_jobs=1, sleep=0.3), "local")
    run = R.launch(cfg, store, run, executor="local", wait=False)
    assert run.status == "submitted"
    journal, deadline = local.journal_path(dag_file), time.time() + 30
    while not (journal.exists() and "first-000" in journal.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    run, state = R.refresh(cfg, store, run.id)
    assert run.status == "running" and state.total == 4
    res = invoke("cancel", str(run.id))
    assert res.exit_code == 0, res.output
    assert store.get_run(run.id).status == "cancelled"
    assert not R._alive(dag_file.parent / R.PID_FILE)
    done = dagmod.rescued(dag_file)
    assert "first-000" in done and "last-000" not in done
    assert invoke("cancel", str(run.id)).exit_code == 1          # already cancelled

    res = invoke("resume", str(run.id), "--wait", "--no-progress")
    assert res.exit_code == 0, res.output
    assert store.get_run(run.id).status == "done" and counts(out)["first-000"] == 1


def test_wait_exits_non_zero_when_the_run_fails(cfg, tmp_path, invoke):
    """What --wait turns into a non-zero exit: a run that ended without every node done."""
    store = R.open_catalog(cfg)
    run, _ = R.create(cfg, store, noop_plan(cfg, tmp_path / "out", fan_out=1, retries=0,
                                            flags={0: ["--fail-times", "5"]}), "local")
    run = R.launch(cfg, store, run, executor="local", wait=True, progress=False)
    with pytest.raises(R.RunFailed, match=f"run {run.id} failed: failed nodes: first-000"):
        R.ensure_ended(run)


def test_auto_executor_is_local_without_a_schedd(cfg):
    unreachable = cfg.with_overrides(condor=CondorConfig(schedd="nowhere", collector="127.0.0.1:9"))
    assert R.choose_executor("auto", unreachable) == "local"
    assert R.choose_executor(None, unreachable.with_overrides(executor="local")) == "local"
    with pytest.raises(R.schedd.CondorError):
        R.choose_executor("condor", unreachable)


def test_submit_reduce_without_partitions_is_one_clean_error(invoke, tmp_path):
    res = invoke("submit", "reduce", "--months", "2", "--source", str(tmp_path / "none"), "--executor", "local")
    assert res.exit_code == 1 and "no raw data" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_submit_reduce_local_end_to_end(cfg, home):
    from smartcache.submit.cli import cli as group
    runner = CliRunner()
    gen = runner.invoke(group, ["generate", "logs", "--months", "1", "--end", "2026-10", "--scale", "0.05",
                                "--no-progress"])
    assert gen.exit_code == 0, gen.output
    res = runner.invoke(group, ["submit", "reduce", "--months", "1", "--end", "2026-10", "--chunk", "8",
                                "--executor", "local", "--wait", "--no-progress"])
    assert res.exit_code == 0, res.output
    store = R.open_catalog(cfg)
    run = store.list_runs()[0]
    assert (run.status, run.executor, run.params["partitions"]) == ("done", "local", 31)
    assert [n.node for n in store.run_nodes(run.id)] == [f"reduce-{i:03d}" for i in range(4)] + ["features-000"]
    reduced = store.list_datasets(prefix="reduced/")
    assert len(reduced) == 31 and all(d.run_id == run.id for d in reduced)
    features = store.get_dataset("features/2026-10-01_2026-10-31")
    assert features.run_id == run.id and features.n_rows > 0


def test_killed_background_executor_shows_failed_and_resumes(cfg, tmp_path, invoke):
    out = tmp_path / "out"
    store = R.open_catalog(cfg)
    run, dag_file = R.create(cfg, store, noop_plan(cfg, out, fan_out=3, max_jobs=1, sleep=0.3), "local")
    R.launch(cfg, store, run, executor="local", wait=False)
    journal, deadline = local.journal_path(dag_file), time.time() + 30
    while not (journal.exists() and journal.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    pid = R._alive(dag_file.parent / R.PID_FILE)
    os.kill(pid, signal.SIGKILL)                                   # no chance to write anything
    wait_gone = time.time() + 10
    while R._alive(dag_file.parent / R.PID_FILE) and time.time() < wait_gone:
        time.sleep(0.05)
    run, _ = R.refresh(cfg, store, run.id)
    assert run.status == "failed" and "died" in run.message
    res = invoke("resume", str(run.id), "--wait", "--no-progress")
    assert res.exit_code == 0, res.output
    assert store.get_run(run.id).status == "done" and counts(out)["first-000"] == 1
