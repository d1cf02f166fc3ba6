"""``smartcache submit <workflow>``, ``runs``, ``status RUN``, ``resume RUN``, ``cancel RUN``.

``ctx.obj`` is the :class:`~smartcache.catalog.config.Config`. Errors are SmartcacheErrors (one
line, non-zero exit, by the main group); ``--wait`` exits non-zero when the run did not finish.
"""

from __future__ import annotations

from typing import Callable

import click

from smartcache.catalog.config import Config
from smartcache.submit import runs as R
from smartcache.submit import workflows as W
from smartcache.submit.context import echo_json, echo_table, get_config, get_store, json_option, when
from smartcache.submit.fileerrors import check_writable

EXECUTORS = click.Choice(["auto", "local", "condor"])


def _cfg(ctx: click.Context) -> Config:
    return get_config(ctx)


def _run_options(fn: Callable) -> Callable:
    fn = click.option("--executor", type=EXECUTORS, default=None,
                      help="where to run the DAG [default: the configuration's; auto = condor if a "
                           "schedd answers, else local]")(fn)
    fn = click.option("--wait", is_flag=True, help="follow the run until it ends; exit non-zero if it failed")(fn)
    fn = click.option("--no-progress", is_flag=True,
                      help="no progress (a bar on a terminal, else a line as nodes finish)")(fn)
    return fn


def _month_options(fn: Callable) -> Callable:
    fn = click.option("--months", type=click.IntRange(min=1), default=6, show_default=True,
                      help="calendar months of raw partitions to reduce")(fn)
    fn = click.option("--end", metavar="YYYY-MM", help="last month (default: the newest found)")(fn)
    fn = click.option("--source", metavar="URI", help="raw logs (default: DATA/raw, where `generate logs` writes)")(fn)
    fn = click.option("--chunk", type=click.IntRange(min=1), default=1, show_default=True,
                      help="daily partitions per reduce node")(fn)
    return fn


def _go(ctx: click.Context, plan: W.Plan, executor: str | None, wait: bool, no_progress: bool) -> None:
    cfg = _cfg(ctx)
    check_writable("the run's DAG under", cfg.runs_dir, folder=True)
    check_writable("the run's outputs under", cfg.data_root, folder=True)
    kind = R.choose_executor(executor, cfg)
    store = get_store(ctx)
    run, dag_file = R.create(cfg, store, plan, kind)
    nodes = len(store.run_nodes(run.id))
    click.echo(f"run {run.id}: {plan.workflow}, {nodes} nodes, executor {kind}, DAG {dag_file}")
    run = _launch(ctx, lambda: R.launch(cfg, store, run, executor=kind, wait=wait,
                                        progress=False if no_progress else None), run)
    _report_launch(ctx, run, wait)


def _launch(ctx: click.Context, start: Callable, run):
    """Run ``start``; Ctrl-C while following an HTCondor run stops following, not the run."""
    try:
        return start()
    except KeyboardInterrupt:
        click.echo(f"\nstopped following run {run.id}; it goes on: `smartcache status {run.id}`", err=True)
        ctx.exit(130)


def _report_launch(ctx: click.Context, run, wait: bool) -> None:
    if run.cluster_id and not wait:
        click.echo(f"submitted: DAGMan cluster {run.cluster_id} (condor_q -batch shows "
                   f"smartcache-{run.workflow}-{run.id})")
    elif not wait:
        click.echo(f"started on the local executor; `smartcache status {run.id}` follows it")
    if wait:
        if run.status == "cancelled":
            click.echo(f"run {run.id} interrupted; `smartcache resume {run.id}` continues it", err=True)
            ctx.exit(130)
        R.ensure_ended(run)
        click.echo(f"run {run.id} done")


@click.group("submit")
def submit() -> None:
    """Write a workflow's DAG and run it (HTCondor or the embedded local executor)."""


@submit.command("reduce")
@_month_options
@_run_options
@click.pass_context
def submit_reduce(ctx, months, end, source, chunk, executor, wait, no_progress):
    """Reduce daily raw partitions (one node each, or per --chunk), then build features."""
    _go(ctx, W.reduce(_cfg(ctx), months=months, end=end, source=source, chunk=chunk), executor, wait, no_progress)


def _newest_features(ctx: click.Context) -> str | None:
    found = sorted(get_store(ctx).list_datasets(kind="features"), key=lambda d: d.updated)
    return found[-1].name if found else None


def _single(kind: str) -> click.Command:
    @click.option("--model", default=W.DEFAULT_MODEL, show_default=True, help="model name")
    @click.option("--features", help="feature table (catalog name; default: the newest)")
    @click.argument("extra", nargs=-1, type=click.UNPROCESSED)
    @_run_options
    @click.pass_context
    def cmd(ctx, model, features, extra, executor, wait, no_progress):
        if kind in ("train", "score"):
            features = features or _newest_features(ctx)
        plan = W.single(_cfg(ctx), kind, model=model, features=features, extra=extra, store=get_store(ctx))
        _go(ctx, plan, executor, wait, no_progress)
    cmd.__doc__ = f"Run the {kind} task as a one-node DAG; arguments after -- go to the task."
    return submit.command(kind, context_settings={"ignore_unknown_options": True})(cmd)


for _kind in W.SINGLE:
    _single(_kind)


@submit.command("pipeline")
@_month_options
@click.option("--model", default=W.DEFAULT_MODEL, show_default=True, help="model name")
@_run_options
@click.pass_context
def submit_pipeline(ctx, months, end, source, chunk, model, executor, wait, no_progress):
    """reduce → features → train → evaluate → score → push, in one DAG."""
    plan = W.pipeline(_cfg(ctx), months=months, end=end, source=source, chunk=chunk, model=model,
                      store=get_store(ctx))
    _go(ctx, plan, executor, wait, no_progress)


# -- monitoring -------------------------------------------------------------------------------
@click.group("runs", invoke_without_command=True)
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--limit", type=int, default=20, show_default=True)
@json_option
@click.pass_context
def runs(ctx: click.Context, workflow: str | None, limit: int, as_json: bool) -> None:
    """List workflow runs (newest first), with node counts; unfinished runs are refreshed first."""
    if ctx.invoked_subcommand is None:
        _list_runs(ctx, workflow, limit, as_json)


@runs.command("list")
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--limit", type=int, default=20, show_default=True)
@json_option
@click.pass_context
def runs_list(ctx: click.Context, workflow: str | None, limit: int, as_json: bool) -> None:
    """List workflow runs (newest first)."""
    _list_runs(ctx, workflow, limit, as_json)


def _list_runs(ctx: click.Context, workflow: str | None, limit: int, as_json: bool) -> None:
    cfg, store = _cfg(ctx), get_store(ctx)
    listed = []
    for run in store.list_runs(workflow=workflow, limit=limit):
        if run.status not in R.TERMINAL:
            run, _ = R.refresh(cfg, store, run.id)
        nodes = store.run_nodes(run.id)
        listed.append((run, sum(n.status == "done" for n in nodes), len(nodes)))
    if as_json:
        return echo_json([{**r.to_dict(), "nodes_done": d, "nodes": t} for r, d, t in listed])
    echo_table(["run", "workflow", "status", "executor", "nodes", "cluster", "created", "finished", "message"],
               [(r.id, r.workflow, r.status, r.executor, f"{d}/{t}", r.cluster_id, when(r.created),
                 when(r.finished), (r.message or "")[:60]) for r, d, t in listed])


@click.command("status")
@click.argument("run_id", type=int)
@json_option
@click.pass_context
def status(ctx: click.Context, run_id: int, as_json: bool) -> None:
    """Per-node state of a run: idle, running, done, failed, held (with reason), retries."""
    run, state = R.refresh(_cfg(ctx), get_store(ctx), run_id)
    nodes = state.nodes if state else []
    if as_json:
        return echo_json({"run": run.to_dict(), "nodes": [vars(n) for n in nodes],
                          "counts": state.counts if state else {}})
    counts = ", ".join(f"{v} {k}" for k, v in sorted(state.counts.items())) if state else "no DAG"
    click.echo(f"run {run.id} ({run.workflow}) {run.status} on {run.executor or '-'}"
               + (f", DAGMan cluster {run.cluster_id}" if run.cluster_id else "") + f": {counts}")
    if run.message:
        click.echo(f"  {run.message}")
    echo_table(["node", "task", "partition", "status", "retries", "message"],
               [(n.node, n.task, n.partition, n.status, n.retries, (n.message or "")[:80]) for n in nodes])


@click.command("resume")
@click.argument("run_id", type=int)
@_run_options
@click.pass_context
def resume(ctx: click.Context, run_id: int, executor: str | None, wait: bool, no_progress: bool) -> None:
    """Continue a failed or cancelled run: only its unfinished nodes run again."""
    store = get_store(ctx)
    run = _launch(ctx, lambda: R.resume(_cfg(ctx), store, run_id, executor=executor, wait=wait,
                                        progress=False if no_progress else None), store.get_run(run_id))
    click.echo(f"run {run.id} resumed on {run.executor}")
    _report_launch(ctx, run, wait)


@click.command("cancel")
@click.argument("run_id", type=int)
@click.pass_context
def cancel(ctx: click.Context, run_id: int) -> None:
    """Stop a run (HTCondor: remove its DAGMan job; local: stop the executor). Resume continues it."""
    run = R.cancel(_cfg(ctx), get_store(ctx), run_id)
    click.echo(f"run {run.id} cancelled")


commands = [submit, runs, status, resume, cancel]
