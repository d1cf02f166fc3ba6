"""submit retrain end to end: the service's feedback partitions -> export -> real Keras training (fresh and
warm-started) -> evaluation against the production version and the heuristics -> promotion, on the local
executor (with the foreground scheduler) and on the project's real HTCondor pool (with its crontab job)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartcache.catalog import load_config, open_store
from smartcache.submit import retrain as RT
from smartcache.submit import schedule as S

from retrain_support import drift_feedback

pytestmark = pytest.mark.slow
EPOCHS = "8"


def _evaluation(store, run_id: int) -> dict:
    ds = next(d for d in store.list_datasets(kind="evaluation") if d.run_id == run_id)
    return json.loads(Path(ds.meta["json"]).read_text())


def _service(cfg, store):
    """The inference service over the same catalog (no background refresh: ``answering`` refreshes)."""
    from dataclasses import replace

    from smartcache.inference import create_app
    cfg = replace(cfg, inference=replace(cfg.inference, auth=False, access_state=False))
    return create_app(cfg, store, refresh_seconds=0).extensions["smartcache"]


def answering(svc, site: str) -> str | None:
    """The model version /decide answers ``site`` with now (the service's own choice, after a refresh)."""
    svc.refresh_now()
    name = svc.next_gap_model(site)
    return svc.models.get(name).ref if name else None


def test_local_retrain_promotes_a_winner_keeps_a_loser_in_staging_and_the_service_follows(cli, home, monkeypatch):
    cfg = load_config()
    store = open_store(cfg.catalog_url, migrate=True)
    site, ws = drift_feedback(cfg, store, 0.05)
    svc = _service(cfg, store)
    assert answering(svc, site) is None
    name = f"cachenet-{site}"

    def stop(seconds):            # Ctrl-C while the scheduler sleeps until the next retrain
        assert 6.9 * 86400 < seconds <= 7 * 86400
        raise KeyboardInterrupt
    monkeypatch.setattr(S, "_sleep", stop)
    res = cli("submit", "retrain", "--site", site, "--executor", "local", "--every", "7d", "--epochs", EPOCHS,
              "--no-progress")
    assert res.exit_code == 0, res.output
    assert "no production version: fresh training only" in res.output
    assert f"{name}:1 -> production: byte hit ratio" in res.output
    assert "schedule stopped after 1 retrain(s)" in res.output
    first = store.get_model(name, 1)
    assert first.stage == "production" and "beats LRU's" in first.stage_reason and first.params["site"] == site
    assert "weights" in {a.kind for a in first.artifacts} and "warm_start" not in first.metrics
    (role, trace), = first.datasets
    parents = store.get_dataset(trace).parents
    assert role == "train" and len(parents) == 27 and all(p.startswith(f"feedback/{site}/") for p in parents)
    assert first.metrics["until"] == "2026-01-22" == store.get_dataset(trace).meta["held_out_from"]
    assert answering(svc, site) == f"{name}:1"

    # a cache of 10 % of the working set, where LRU is hard to beat on this trace: the new version loses
    store.update_site(site, cache_size=int(ws * 0.10))
    res = cli("submit", "retrain", "--site", site, "--executor", "local", "--wait", "--epochs", EPOCHS, "--no-progress")
    assert res.exit_code == 0, res.output
    assert f"warm-started from {name}:1" in res.output and f"{name}:2 -> staging: " in res.output
    second, first = store.get_model(name, 2), store.get_model(name, 1)
    assert (second.stage, first.stage) == ("staging", "production") and "does not beat" in second.stage_reason
    warm = second.metrics["warm_start"]
    assert warm["from"] == f"{name}:1" and warm["chosen"] in ("warm", "fresh")
    assert warm["val_loss_warm"] > 0 and warm["val_loss_fresh"] > 0
    run = store.list_runs(workflow=RT.WORKFLOW, limit=1)[0]
    ev = _evaluation(store, run.id)
    assert ev["summary"]["window"]["from"] == "2026-01-22" and ev["summary"]["window"]["first_request"] == "2026-01-01"
    assert {f"model:{name}", f"model:{name}:1", "lru", "arc", "s3fifo"} <= {r["policy"] for r in ev["results"]}
    assert answering(svc, site) == f"{name}:1"            # nothing promoted, nothing swapped
    store.set_model_stage(name, 2, "production", "by hand")
    assert answering(svc, site) == f"{name}:2"            # a promotion is picked up, no restart
    store.close()


@pytest.mark.condor
def test_retrain_on_the_pool_and_its_crontab_schedule(condor_pool, condor_tmp_path, monkeypatch):
    from smartcache.condor import schedd
    from smartcache.submit import runs as R
    from smartcache.submit.cli import cli as group
    for var in [v for v in os.environ if v.startswith("SMARTCACHE_") and v != "SMARTCACHE_POOL_ROOT"]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("SMARTCACHE_HOME", str(condor_tmp_path / "home"))
    cfg = load_config()
    store = open_store(cfg.catalog_url, migrate=True)
    site, _ = drift_feedback(cfg, store, 0.05)
    try:
        t0 = time.monotonic()
        res = CliRunner().invoke(group, ["submit", "retrain", "--site", site, "--executor", "condor", "--every", "1m",
                                         "--wait", "--epochs", EPOCHS, "--no-progress"])
        assert res.exit_code == 0, res.output
        print(f"retrain DAG on the pool: {time.monotonic() - t0:.0f} s")
        assert "HTCondor cron job" in res.output and f"cachenet-{site}:1 -> production" in res.output
        sched = store.list_runs(workflow=S.SCHEDULE)[0]
        sub = (Path(sched.dag_dir) / "schedule.sub").read_text().splitlines()
        assert {"universe = local", "on_exit_remove = false", "cron_minute = *"} <= set(sub)
        first = store.list_runs(workflow=RT.WORKFLOW)[0]
        assert (first.status, first.executor, first.params["schedule"]) == ("done", "condor", sched.id)

        # the cron job starts within a minute and submits a fresh retrain DAG of this schedule (its run row
        # exists before the DAG is submitted: wait for the submission, which gives it a cluster id)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            fired = [r for r in store.list_runs(workflow=RT.WORKFLOW) if r.id != first.id]
            if fired and (fired[0].cluster_id or fired[0].status not in ("created", "running")):
                break
            time.sleep(2)
        assert fired, (Path(sched.dag_dir) / S.FIRED_LOG).read_text()
        assert fired[0].params["schedule"] == sched.id and fired[0].cluster_id
        assert f"run {fired[0].id} submitted" in (Path(sched.dag_dir) / S.FIRED_LOG).read_text()
        done = R.follow(cfg, store, fired[0].id, progress=False)
        assert done.status == "done", done.message
        second = store.get_model(f"cachenet-{site}", 2)
        verdict = RT.verdict_of(store, fired[0].id)
        assert second.metrics["warm_start"]["from"] == f"cachenet-{site}:1"
        assert second.stage == ("production" if verdict["promote"] else "staging") and verdict["reason"]

        res = CliRunner().invoke(group, ["cancel", str(sched.id)])
        assert res.exit_code == 0, res.output
        deadline = time.monotonic() + 60          # a removed job leaves the queue shortly after
        while schedd.query_jobs(f"ClusterId == {sched.cluster_id}", ["ClusterId"], cfg):
            assert time.monotonic() < deadline, "the schedule's cron job is still queued after cancel"
            time.sleep(1)
        assert store.get_run(sched.id).status == "cancelled"
    finally:
        for run in store.list_runs():
            if run.cluster_id and schedd.query_jobs(f"ClusterId == {run.cluster_id}", ["ClusterId"], cfg):
                schedd.remove(run.cluster_id, cfg, reason="test teardown")
        store.close()
