"""``smartcache submit retrain``: continued training from the service's feedback, once or on a schedule.

Attaches itself to the ``submit`` group of :mod:`.runs`; the plan is :mod:`smartcache.submit.retrain`, the
schedule :mod:`smartcache.submit.schedule`.
"""

from __future__ import annotations

import time

import click

from smartcache.catalog import SmartcacheError
from smartcache.catalog.errors import Invalid
from smartcache.submit import retrain as RT
from smartcache.submit import runs as R
from smartcache.submit import schedule as S
from smartcache.submit.cli import runs as runs_cli
from smartcache.submit.context import get_config, get_store


@click.command("retrain")
@click.option("--site", help="retrain on this site's feedback")
@click.option("--all", "all_sites", is_flag=True,
              help="one chain over every site's feedback (one model judged on all sites)")
@click.option("--days", type=click.IntRange(min=2), default=28, show_default=True,
              help="feedback days in the window (the last of them are held out)")
@click.option("--model", help="model name [default: cachenet-SITE, or cachenet with --all]; the production "
                              "model now answering the site is warm-started from and must be beaten")
@click.option("--end", metavar="YYYY-MM-DD", help="last feedback day of the window [default: the newest]")
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="share of the window's days held out (at least one day)")
@click.option("--epochs", type=click.IntRange(min=1), help="at most this many epochs [default: the trainer's]")
@click.option("--every", metavar="DURATION",
              help="again every 7d, 1d, 6h, 30m ...: HTCondor crontab job (condor), or a foreground scheduler (local)")
@runs_cli._run_options
@click.pass_context
def retrain(ctx, site, all_sites, days, model, end, holdout, epochs, every, executor, wait, no_progress):
    """Export the feedback window, train (fresh and warm-started), evaluate on the held-out days; promote
    the new version only if it beats the production version and the best heuristic."""
    try:
        if bool(site) == bool(all_sites):
            raise Invalid("give --site NAME or --all")
        if every and end:
            raise Invalid("--every re-plans the window each time (it ends at the newest feedback): drop --end")
        period = S.parse_every(every) if every else None
        req = RT.RetrainRequest(site=site, days=days, model=model, holdout=holdout, end=end, epochs=epochs)
        kind = R.choose_executor(executor, get_config(ctx))
        if period is None:
            return _once(ctx, req, kind, wait, no_progress)
        if kind == "condor":
            return _condor_schedule(ctx, req, every, wait, no_progress)
        S.run_every(period, lambda k: _local_cycle(ctx, req, k, no_progress), echo=click.echo)
    except SmartcacheError as e:
        raise click.ClickException(str(e)) from e


def _once(ctx: click.Context, req: RT.RetrainRequest, kind: str, wait: bool, no_progress: bool) -> None:
    plan = RT.plan(get_config(ctx), get_store(ctx), req)
    click.echo(RT.describe(plan))
    _go(ctx, plan, kind, wait, no_progress)


def _go(ctx: click.Context, plan, kind: str, wait: bool, no_progress: bool) -> None:
    """Create the run, start it, follow it with ``--wait`` and then say the verdict."""
    cfg, store = get_config(ctx), get_store(ctx)
    run, dag_file = R.create(cfg, store, plan, kind)
    click.echo(f"run {run.id}: {plan.workflow}, {len(store.run_nodes(run.id))} nodes, executor {kind}, DAG {dag_file}")
    run = runs_cli._launch(ctx, lambda: R.launch(cfg, store, run, executor=kind, wait=wait,
                                                 progress=False if no_progress else None), run)
    runs_cli._report_launch(ctx, run, wait)
    if wait:
        _say_verdict(ctx, run.id)


def _local_cycle(ctx: click.Context, req: RT.RetrainRequest, k: int, no_progress: bool) -> bool:
    """One scheduled retrain on the local executor; False stops the schedule (the run was interrupted)."""
    cfg, store = get_config(ctx), get_store(ctx)
    click.echo(f"[{S.when(time.time())}] retrain {k}")
    try:
        plan = RT.plan(cfg, store, req)
    except SmartcacheError as e:
        click.echo(f"  not run: {e}")
        return True
    click.echo(f"  {RT.describe(plan)}")
    run, dag_file = R.create(cfg, store, plan, "local")
    click.echo(f"  run {run.id}: DAG {dag_file}")
    run = R.launch(cfg, store, run, executor="local", wait=True, progress=False if no_progress else None)
    if run.status == "cancelled":
        click.echo(f"  run {run.id} interrupted; `smartcache resume {run.id}` continues it")
        return False
    if run.status != "done":
        click.echo(f"  run {run.id} {run.status}: {run.message or ''} (`smartcache status {run.id}`)")
        return True
    _say_verdict(ctx, run.id, indent="  ")
    return True


def _condor_schedule(ctx: click.Context, req: RT.RetrainRequest, every: str, wait: bool, no_progress: bool) -> None:
    from smartcache.condor import cron
    cfg, store = get_config(ctx), get_store(ctx)
    plan = RT.plan(cfg, store, req)                # the checks, before the schedule exists
    sched = S.schedule_on_condor(cfg, store, req, every)
    click.echo(f"schedule: run {sched.id}, HTCondor cron job {sched.cluster_id} ({sched.message}); "
               f"`smartcache cancel {sched.id}` stops it; what each start did: {sched.dag_dir}/{S.FIRED_LOG}")
    nxt = cron.next_start(sched.cluster_id, cfg)
    if nxt:
        click.echo(f"next start: {S.when(nxt)}")
    plan = RT.plan(cfg, store, RT.RetrainRequest(**{**req.to_dict(), "schedule": sched.id}))
    click.echo(RT.describe(plan))
    _go(ctx, plan, "condor", wait, no_progress)


def _say_verdict(ctx: click.Context, run_id: int, indent: str = "") -> None:
    verdict = RT.verdict_of(get_store(ctx), run_id)
    if verdict is None:
        click.echo(f"{indent}run {run_id}: no verdict recorded")
        return
    stage = "production" if verdict["promote"] else "staging"
    click.echo(f"{indent}{verdict['model']} -> {stage}: {verdict['reason']}")


runs_cli.submit.add_command(retrain)
commands: list = []
