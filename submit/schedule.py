"""Retraining on a schedule: ``smartcache submit retrain --site S --every 7d``.

- Local executor: a foreground scheduler (:func:`run_every`). It runs the retrain DAG now, says what came of
  it, sleeps until ``start + k * every``, and again; a period with too little feedback is reported and
  skipped, not fatal. Ctrl-C while it sleeps stops it; Ctrl-C during a run interrupts that run (the local
  executor leaves it resumable) and stops the schedule.
- HTCondor: the DAG is submitted now, and a schedule is queued with HTCondor's crontab submit commands
  (:mod:`smartcache.condor.cron`): a ``retrain-schedule`` run row whose cluster is a local universe cron job.
  At each time it runs :func:`fire`, which plans a fresh retrain (the window ending at the newest feedback
  then) and submits its DAG -- unless the previous one of this schedule is still running. What it did is
  appended to ``fired.log`` in the schedule's folder. ``smartcache cancel RUN`` removes the schedule.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from smartcache.catalog import Run, SmartcacheError, Store, load_config, open_store
from smartcache.catalog.config import Config
from smartcache.catalog.errors import Invalid
from smartcache.submit import retrain as RT
from smartcache.submit import runs as R

SCHEDULE = "retrain-schedule"
FIRED_LOG = "fired.log"
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_every(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*", str(text or ""))
    if not m or float(m.group(1)) <= 0:
        raise Invalid(f"--every must be a duration like 7d, 12h or 30m, not {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def run_every(period: float, cycle: Callable[[int], bool], *, clock: Callable[[], float] | None = None,
              sleep: Callable[[float], None] | None = None, echo: Callable[[str], None] = print) -> int:
    """Call ``cycle(k)`` (k = 1, 2, ...) at ``start + (k - 1) * period`` until it returns False or Ctrl-C;
    returns how many cycles started. A cycle longer than the period skips the times it overran."""
    clock, sleep = clock or time.time, sleep or _sleep
    start, k = clock(), 0
    try:
        while True:
            k += 1
            if not cycle(k):
                return k
            slot = k
            while start + slot * period <= clock():
                slot += 1
            if slot > k:
                echo(f"retrain {k} took longer than the period: {slot - k} start(s) skipped")
            nxt = start + slot * period
            echo(f"next retrain at {when(nxt)} (in {_human(nxt - clock())}); Ctrl-C stops the schedule")
            sleep(max(0.0, nxt - clock()))
    except KeyboardInterrupt:
        echo(f"schedule stopped after {k} retrain(s)")
        return k


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _human(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return " ".join(f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if v) or "0s"


# -- HTCondor ---------------------------------------------------------------------------------------
def schedule_on_condor(cfg: Config, store: Store, req: RT.RetrainRequest, every: str) -> Run:
    """Queue the cron job of a schedule and record it as a ``retrain-schedule`` run (cluster = the cron job)."""
    from smartcache.condor import cron
    from smartcache.condor.submitdesc import config_env

    fields = cron.cron_fields(parse_every(every), datetime.now())
    run = store.create_run(SCHEDULE, params={**req.to_dict(), "every": every, "cron": fields}, executor="condor")
    folder = cfg.runs_dir / f"run-{run.id:05d}-{SCHEDULE}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        job = cron.cron_job(["-m", "smartcache.submit.retrain", "--catalog-url", cfg.catalog_url,
                             "--schedule", str(run.id)], fields=fields, initialdir=folder, run_id=run.id,
                            workflow=SCHEDULE, env=config_env(cfg))
        cluster = cron.submit_cron(job, cfg, folder)
    except (SmartcacheError, OSError) as e:
        store.update_run(run.id, status="failed", message=str(e), finished=R.now())
        raise
    return store.update_run(run.id, status="running", cluster_id=cluster, dag_dir=str(folder), started=R.now(),
                            message=f"every {every}: {cron.describe(fields)}")


def fire(catalog_url: str, schedule_id: int) -> int:
    """One start of a schedule's cron job: plan and submit a fresh retrain DAG (see the module doc)."""
    cfg = load_config()
    store = open_store(catalog_url)
    try:
        sched = store.get_run(schedule_id)
        log = _Log(Path(sched.dag_dir) if sched.dag_dir else None)
        if sched.status in R.TERMINAL:
            log(f"schedule {schedule_id} is {sched.status}: nothing to do")
            return 0
        busy = _unfinished(cfg, store, schedule_id)
        if busy:
            log(f"skipped: run {busy[0].id} of this schedule is still {busy[0].status}")
            return 0
        req = RT.RetrainRequest.from_dict({**sched.params, "end": None, "schedule": schedule_id})
        try:
            plan = RT.plan(cfg, store, req)
        except SmartcacheError as e:
            log(f"not run: {e}")
            return 1
        run, _ = R.create(cfg, store, plan, "condor")
        run = R.launch(cfg, store, run, executor="condor", wait=False)
        log(f"run {run.id} submitted: DAGMan cluster {run.cluster_id}; {RT.describe(plan)}")
        return 0
    finally:
        store.close()


def _unfinished(cfg: Config, store: Store, schedule_id: int) -> list[Run]:
    """This schedule's retrain runs that have not ended (their state read from the schedd first)."""
    out = []
    for run in store.list_runs(workflow=RT.WORKFLOW, limit=200):
        if run.params.get("schedule") == schedule_id and run.status not in R.TERMINAL:
            run, _ = R.refresh(cfg, store, run.id)
            if run.status not in R.TERMINAL:
                out.append(run)
    return out


class _Log:
    """Lines to stdout and appended to the schedule's ``fired.log`` (the job's own output is per start)."""

    def __init__(self, folder: Path | None):
        self.path = folder / FIRED_LOG if folder else None

    def __call__(self, line: str) -> None:
        text = f"{when(time.time())} {line}"
        print(text, flush=True)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(text + "\n")
