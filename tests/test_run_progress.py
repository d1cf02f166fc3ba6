"""A run's progress where output is a log, not a terminal: a line as nodes finish (local executor, noop DAG)."""

from __future__ import annotations

import time

from dagkit import noop_workflow
from smartcache.catalog import load_config
from smartcache.submit import runs as R
from smartcache.submit.workflows import Plan


def _plan(out, **kw) -> Plan:
    return Plan("noop", {}, lambda run_id: noop_workflow(out, run_id=run_id, **kw))


def test_a_waited_run_off_a_terminal_says_each_node_as_it_finishes(home, tmp_path, capsys):
    cfg = load_config()
    store = R.open_catalog(cfg)
    run, dag_file = R.create(cfg, store, _plan(tmp_path / "out", fan_out=3), "local")
    run = R.launch(cfg, store, run, executor="local", wait=True)      # progress=None, as `submit --wait` off a tty
    assert run.status == "done"
    lines = [ln for ln in capsys.readouterr().err.splitlines() if f" {dag_file.parent.name}: " in ln]
    assert len(lines) >= 2 and lines[-1].endswith("4/4 done, 0 running, 0 failed; last-000 done")
    store.close()


def test_a_background_run_logs_its_progress_into_local_out(home, tmp_path):
    cfg = load_config()
    store = R.open_catalog(cfg)
    run, dag_file = R.create(cfg, store, _plan(tmp_path / "out", fan_out=2), "local")
    run = R.launch(cfg, store, run, executor="local", wait=False)
    deadline = time.monotonic() + 120
    while run.status not in R.TERMINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        run, _ = R.refresh(cfg, store, run.id)
    assert run.status == "done"
    log = (dag_file.parent / "local.out").read_text()
    assert f"{dag_file.parent.name}: 3/3 done, 0 running, 0 failed; last-000 done" in log
    store.close()
