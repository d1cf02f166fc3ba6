"""Periodic runs with HTCondor's own crontab submit commands (the manual's "Time Scheduling for Job Execution").

A schedule is a *local universe* job with ``cron_minute``, ``cron_hour``, ``cron_day_of_week`` (and the
other ``cron_*`` commands, ``*`` where free) and ``on_exit_remove = false``: the schedd computes its
``DeferralTime`` from the cron fields, starts it on the submit machine at each time, and -- because it does
not leave the queue when it exits -- computes the next time and waits again. Each start runs
``python -m smartcache.submit.retrain --schedule RUN``, which plans a fresh retrain DAG and submits it
(a new run, its own DAG dir and DAGMan job).

Why not the cron commands on the DAGMan job itself: DAGMan runs in the *scheduler* universe, and the
manual's limits of job deferral say it "is not available for scheduler universe jobs". Measured on the
project's pool (HTCondor 25): a DAGMan job submitted with ``cron_minute = *`` and ``on_exit_remove =
false`` stays idle while its ``DeferralTime`` moves on by a minute every minute (with ``cron_window = 120``
as well): it never starts. The same commands on a local universe job start it on every minute.

The schedd reads the cron fields in its own local time; :func:`cron_fields` takes the submit machine's.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence

import htcondor2

from smartcache.catalog.errors import Invalid
from smartcache.condor import schedd
from smartcache.condor.submitdesc import join_args

DAY, HOUR, MINUTE = 86400, 3600, 60
CRON_KEYS = ("cron_minute", "cron_hour", "cron_day_of_month", "cron_month", "cron_day_of_week")
OUT, ERR, LOG, SUB = "schedule.out", "schedule.err", "schedule.log", "schedule.sub"
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def cron_fields(period: float, at: datetime) -> dict[str, str]:
    """The ``cron_*`` commands that start a job every ``period`` seconds, in step with ``at`` (local time).

    A crontab can say a week, a day, a number of hours dividing a day or of minutes dividing an hour;
    any other period is refused with the ones it can say."""
    p = int(round(period))
    m, h = at.minute, at.hour
    fields = dict.fromkeys(CRON_KEYS, "*")
    if p == 7 * DAY:
        fields.update(cron_minute=str(m), cron_hour=str(h), cron_day_of_week=str((at.weekday() + 1) % 7))
    elif p == DAY:
        fields.update(cron_minute=str(m), cron_hour=str(h))
    elif p >= HOUR and p % HOUR == 0 and DAY % p == 0:
        n = p // HOUR
        fields.update(cron_minute=str(m), cron_hour="*" if n == 1 else f"{h % n}-23/{n}")
    elif p >= MINUTE and p % MINUTE == 0 and HOUR % p == 0:
        n = p // MINUTE
        fields.update(cron_minute="*" if n == 1 else f"{m % n}-59/{n}")
    else:
        raise Invalid(f"HTCondor's crontab cannot start a job every {period:g} s: use 7d, 1d, a number of hours "
                      "that divides 24 (e.g. 6h) or of minutes that divides 60 (e.g. 15m)")
    return fields


def describe(fields: Mapping[str, str]) -> str:
    """The cron fields in words (``every Thursday at 14:05``)."""
    m, h, dow = fields["cron_minute"], fields["cron_hour"], fields["cron_day_of_week"]
    if dow != "*":
        return f"every {_DAYS[int(dow) % 7]} at {int(h):02d}:{int(m):02d} (schedd local time)"
    if h.isdigit():
        return f"every day at {int(h):02d}:{int(m):02d} (schedd local time)"
    if m.isdigit():
        return f"every hour at minute {m}" if h == "*" else f"at minute {m} of hours {h}"
    return "every minute" if m == "*" else f"at minutes {m} of every hour"


def cron_job(argv: Sequence[str], *, fields: Mapping[str, str], initialdir: Path, run_id: int, workflow: str,
             env: Mapping[str, str], python: str | None = None) -> htcondor2.Submit:
    """The submit description of a schedule: a local universe job running ``python argv`` at the cron times."""
    bad = set(fields) - set(CRON_KEYS)
    if bad:
        raise Invalid(f"not crontab submit commands: {sorted(bad)}")
    environment = dict(env)
    for key in ("CONDOR_CONFIG", "PATH"):      # the job submits DAGs to the same schedd as its submitter
        if os.environ.get(key) and key not in environment:
            environment[key] = os.environ[key]
    desc = {
        "universe": "local",
        "executable": python or sys.executable,
        "arguments": join_args(list(argv)),
        "initialdir": str(Path(initialdir).absolute()),
        "output": OUT, "error": ERR, "log": LOG,
        "batch_name": f"smartcache-{workflow}-{run_id}",
        "+SmartcacheRun": str(int(run_id)),
        "+SmartcacheWorkflow": f'"{workflow}"',
        "+SmartcacheTask": '"schedule"',
        "+SmartcachePartition": '"cron"',
        # the manual: a CronTab job leaves the queue when it exits unless on_exit_remove says otherwise
        "on_exit_remove": "false",
        **dict(fields),
        "environment": join_args([f"{k}={v}" for k, v in sorted(environment.items())]),
    }
    return htcondor2.Submit(desc)


def submit_cron(job: htcondor2.Submit, cfg, initialdir: Path) -> int:
    """Write the description beside the schedule's logs (``schedule.sub``) and queue it; returns the cluster id."""
    Path(initialdir, SUB).write_text(str(job) + "\n")
    try:
        return int(schedd.connect(cfg).submit(job).cluster())
    except htcondor2.HTCondorException as e:
        raise schedd.CondorError(f"submitting the schedule failed: {e}") from e


def next_start(cluster_id: int, cfg) -> float | None:
    """When the schedd will next start the schedule (its ``DeferralTime``), if it is queued."""
    jobs = schedd.query_jobs(f"ClusterId == {int(cluster_id)}", ["DeferralTime"], cfg)
    value = jobs[0].get("DeferralTime") if jobs else None
    return float(value) if isinstance(value, (int, float)) else None
