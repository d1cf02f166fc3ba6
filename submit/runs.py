"""The life of a run: create (catalog row + DAG dir), launch on an executor, follow, resume, cancel.

The catalog's ``runs`` row holds executor, DAG dir, DAGMan cluster id, status and times; its
``run_nodes`` rows mirror the per-node state that :func:`smartcache.condor.status.collect` reads
from the DAG dir (plus the schedd for condor runs). A local run executes in this process with
``--wait``; otherwise in a detached ``python -m smartcache.submit.runs`` process, so that both
executors behave alike: submit returns, ``status``/``cancel``/``resume`` work the same.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from smartcache.catalog import Run, SmartcacheError, Store, open_store
from smartcache.catalog.config import Config
from smartcache.catalog.errors import Invalid
from smartcache.condor import dag as dagmod
from smartcache.condor import local, schedd, status
from smartcache.condor.progresslines import ProgressLines
from smartcache.condor.submitdesc import batch_name, config_env
from smartcache.submit.workflows import Plan, missing_tasks

TERMINAL = ("done", "failed", "cancelled")
PID_FILE = "local.pid"
POLL_SECONDS = 2.0


class RunFailed(SmartcacheError):
    """A followed run ended without finishing every node."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def open_catalog(cfg: Config) -> Store:
    """The catalog, migrated (a first `submit` on a fresh machine needs no `init`)."""
    return open_store(cfg.catalog_url, migrate=True)


def choose_executor(requested: str | None, cfg: Config) -> str:
    kind = requested or cfg.executor
    if kind == "auto":
        return "condor" if schedd.available(cfg) else "local"
    if kind == "condor" and not schedd.available(cfg):
        schedd.connect(cfg)   # raises the precise reason when no schedd answers
        raise schedd.CondorError("condor_dagman is not on PATH: cannot run DAGs on HTCondor from here")
    if kind not in ("local", "condor"):
        raise Invalid(f"executor must be auto, local or condor, not {kind!r}")
    return kind


def dag_file_of(run: Run) -> Path:
    if not run.dag_dir:
        raise Invalid(f"run {run.id} has no DAG")
    return Path(run.dag_dir) / dagmod.DAG_FILE


def create(cfg: Config, store: Store, plan: Plan, executor: str) -> tuple[Run, Path]:
    """A run row, and its DAG written under the runs dir."""
    run = store.create_run(plan.workflow, params=plan.params, executor=executor)
    try:
        wf = plan.make(run.id)
        missing = missing_tasks(wf)
        if missing:
            raise Invalid(f"task module(s) not installed: {', '.join('smartcache.tasks.' + m for m in missing)}")
        dag_dir = cfg.runs_dir / f"run-{run.id:05d}-{plan.workflow}"
        dag = dagmod.build(wf, dag_dir, env=config_env(cfg), transfer_files=cfg.condor.transfer_files)
        dag_file = dagmod.write(dag, dag_dir)
    except SmartcacheError as e:
        store.update_run(run.id, status="failed", message=str(e), finished=now())
        raise
    store.set_nodes(run.id, [{"node": n, "task": node.layer, "status": "idle", "retries": 0}
                             for n, node in dagmod.read(dag_file).nodes.items()])
    return store.update_run(run.id, dag_dir=str(dag_dir)), dag_file


def launch(cfg: Config, store: Store, run: Run, *, executor: str, wait: bool, progress: bool | None = None,
           resume: bool = False) -> Run:
    """Start (or continue) a run; with ``wait`` return only when it has ended."""
    dag_file = dag_file_of(run)
    Path(str(dag_file) + ".metrics").unlink(missing_ok=True)   # a fresh ending will be written
    base = dict(executor=executor, message=None, finished=None, started=run.started or now())
    if executor == "condor":
        cluster = schedd.submit_dag(dag_file, cfg, resume=resume, batch_name=batch_name(run.workflow, run.id))
        run = store.update_run(run.id, status="submitted", cluster_id=cluster, **base)
        return follow(cfg, store, run.id, progress) if wait else run
    if wait:
        store.update_run(run.id, status="running", cluster_id=None, **base)
        return execute_local(store, run.id, resume=resume, progress=progress)
    cmd = [sys.executable, "-m", "smartcache.submit.runs", "--catalog-url", cfg.catalog_url, "--run-id",
           str(run.id)] + (["--resume"] if resume else [])
    with open(dag_file.parent / "local.out", "ab") as out:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    # Written here as well as by the child, so status never sees a run without its executor.
    (dag_file.parent / PID_FILE).write_text(str(child.pid))
    return store.update_run(run.id, status="submitted", cluster_id=None, **base)


def execute_local(store: Store, run_id: int, *, resume: bool = False,
                  progress: bool | None = None) -> Run:
    """Run a run's DAG on the local executor in this process, mirroring node states into the catalog."""
    run = store.get_run(run_id)
    dag_file = dag_file_of(run)
    pid_file = dag_file.parent / PID_FILE
    pid_file.write_text(str(os.getpid()))
    store.update_run(run_id, status="running")
    try:
        outcome = local.run_dag(dag_file, resume=resume, progress=progress,
                                on_update=lambda states: store.set_nodes(run_id, [s.to_catalog() for s in states]))
    finally:
        pid_file.unlink(missing_ok=True)
    message = None
    if outcome.failed:
        message = f"failed nodes: {', '.join(outcome.failed)}"
    elif outcome.status == "cancelled":
        message = "interrupted; `smartcache resume` continues it"
    return store.update_run(run_id, status=outcome.status, message=message, finished=now())


# -- monitoring ---------------------------------------------------------------------------
def refresh(cfg: Config, store: Store, run_id: int) -> tuple[Run, status.RunState | None]:
    """Read the run's state from its DAG dir (and schedd) and write it to the catalog."""
    run = store.get_run(run_id)
    if not run.dag_dir or not dag_file_of(run).exists():
        return run, None
    dag_file = dag_file_of(run)
    if run.executor == "condor" and run.cluster_id and run.status not in TERMINAL:
        try:
            jobs, dagman = schedd.node_jobs(run.cluster_id, cfg), schedd.dagman_job(run.cluster_id, cfg)
        except schedd.CondorError as e:
            state = status.collect(dag_file)
            store.set_nodes(run_id, [s.to_catalog() for s in state.nodes])
            return store.update_run(run_id, message=f"schedd unreachable: {e}"), state
        state = status.collect(dag_file, jobs)
        changes = _condor_run_status(run, state, dagman)
    else:
        state = status.collect(dag_file)
        changes = _local_run_status(run, state, dag_file.parent / PID_FILE) if run.status not in TERMINAL else {}
    store.set_nodes(run_id, [s.to_catalog() for s in state.nodes])
    if changes.get("status") in TERMINAL and not run.finished:
        changes["finished"] = now()
    return (store.update_run(run_id, **changes) if changes else run), state


def _condor_run_status(run: Run, state: status.RunState, dagman: dict | None) -> dict:
    if dagman is not None and dagman.get("in_queue"):
        if dagman.get("JobStatus") == 5:
            return {"status": "running", "message": f"DAGMan job held: {dagman.get('HoldReason')}"}
        started = any(n.status != "idle" for n in state.nodes) or dagman.get("JobStatus") == 2
        return {"status": "running" if started else "submitted", "message": None}
    if dagman is not None and dagman.get("JobStatus") == 3:
        return {"status": "cancelled", "message": "DAGMan job removed"}
    exit_code = state.exit_code
    if exit_code is None and dagman is not None:   # left the queue: its history has the exit code
        exit_code = dagman.get("ExitCode")
    if exit_code is None:
        return {}   # not known yet (history not written, or the schedd forgot it)
    ok = exit_code == 0 and state.counts.get("done", 0) == state.total
    return {"status": "done" if ok else "failed", "message": None if ok else _failed_message(state)}


def _local_run_status(run: Run, state: status.RunState, pid_file: Path) -> dict:
    if _alive(pid_file):
        return {"status": "running"} if run.status != "running" else {}
    if state.finished:
        if state.exit_code == 0:
            return {"status": "done", "message": None}
        return {"status": "failed" if state.exit_code == 1 else "cancelled", "message": _failed_message(state)}
    return {"status": "failed", "message": "local executor died; `smartcache resume` continues the run"}


def _failed_message(state: status.RunState) -> str:
    failed = [n.node for n in state.nodes if n.status == "failed"]
    return f"failed nodes: {', '.join(failed)}" if failed else "not all nodes finished"


def _alive(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is a live smartcache executor."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return pid if b"smartcache" in cmdline and not zombie else None


def follow(cfg: Config, store: Store, run_id: int, progress: bool | None = None) -> Run:
    """Poll a run until it ends, with a progress bar on a terminal (plain lines in a log, nothing with
    ``progress=False``); raise :class:`RunFailed` if it did not finish."""
    tty = sys.stderr.isatty()
    run, state = refresh(cfg, store, run_id)
    total = state.total if state else 0
    bar = tqdm(total=total, unit="node", file=sys.stderr, disable=not (tty if progress is None else progress),
               desc=f"run {run_id}", dynamic_ncols=True)
    lines = ProgressLines(f"run {run_id}", total) if progress is None and not tty else None
    shown: set[str] = set()
    before = {n.node: n.status for n in state.nodes} if state else {}
    try:
        while run.status not in TERMINAL:
            time.sleep(POLL_SECONDS)
            run, state = refresh(cfg, store, run_id)
            if state is not None:
                bar.update(state.counts.get("done", 0) - bar.n)
                bar.set_postfix({k: v for k, v in state.counts.items() if k != "done"}, refresh=True)
                for n in state.nodes:
                    if n.status == "held" and n.node not in shown:
                        shown.add(n.node)
                        bar.write(f"{n.node} held: {n.message}", file=sys.stderr)
                if lines is not None:
                    ended = [(n.node, n.status) for n in state.nodes
                             if n.status in ("done", "failed") and before.get(n.node) != n.status]
                    lines.update(state.counts, ended)
                before = {n.node: n.status for n in state.nodes}
    finally:
        bar.close()
    return run


def ensure_ended(run: Run) -> None:
    if run.status == "done":
        return
    raise RunFailed(f"run {run.id} {run.status}" + (f": {run.message}" if run.message else ""))


# -- resume / cancel ----------------------------------------------------------------------
def resume(cfg: Config, store: Store, run_id: int, *, executor: str | None = None, wait: bool = False,
           progress: bool | None = None) -> Run:
    run, state = refresh(cfg, store, run_id)
    if run.status == "done":
        raise Invalid(f"run {run_id} is complete; nothing to resume")
    if run.status in ("submitted", "running"):
        raise Invalid(f"run {run_id} is still {run.status}; `smartcache cancel {run_id}` it first")
    dag_file = dag_file_of(run)
    if not dag_file.exists():
        raise Invalid(f"run {run_id}: its DAG {dag_file} is gone")
    if run.executor == "condor" and run.cluster_id and _dagman_queued(run.cluster_id, cfg):
        raise Invalid(f"run {run_id}: DAGMan job {run.cluster_id} is still leaving the queue; try again shortly")
    kind = choose_executor(executor or run.executor, cfg)
    # Whatever either executor finished (rescue file, local journal, node status file) goes
    # into a fresh rescue file, so DAGMan and the local executor both skip it.
    done = local.finished_nodes(dag_file) | {n.node for n in (state.nodes if state else []) if n.status == "done"}
    failed = [n.node for n in (state.nodes if state else []) if n.status == "failed"]
    if done and done != dagmod.rescued(dag_file):
        dagmod.write_rescue(dag_file, done, failed, total=state.total if state else None)
    has_rescue = bool(dagmod.rescue_files(dag_file))
    run = store.update_run(run_id, status="created", message=None)
    return launch(cfg, store, run, executor=kind, wait=wait, progress=progress, resume=has_rescue)


def _dagman_queued(cluster_id: int, cfg: Config) -> bool:
    try:
        return bool(schedd.query_jobs(f"ClusterId == {int(cluster_id)}", ["ClusterId"], cfg))
    except schedd.CondorError:
        return False     # no schedd here: nothing of ours can be running there


def cancel(cfg: Config, store: Store, run_id: int) -> Run:
    run = store.get_run(run_id)
    if run.status in TERMINAL:
        raise Invalid(f"run {run_id} already {run.status}")
    if run.executor == "condor" and run.cluster_id:
        schedd.remove(run.cluster_id, cfg)
    elif run.dag_dir:
        pid = _alive(Path(run.dag_dir) / PID_FILE)
        if pid:
            os.kill(pid, signal.SIGTERM)   # the executor stops its nodes and writes a rescue file
            deadline = time.time() + 15
            while _alive(Path(run.dag_dir) / PID_FILE) and time.time() < deadline:
                time.sleep(0.1)
    return store.update_run(run_id, status="cancelled", message="cancelled", finished=now())


def main(argv: list[str] | None = None) -> int:
    """Entry point of a detached local run (started by :func:`launch`)."""
    p = argparse.ArgumentParser(prog="python -m smartcache.submit.runs")
    p.add_argument("--catalog-url", required=True)
    p.add_argument("--run-id", type=int, required=True)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    store = open_store(a.catalog_url)
    try:
        run = execute_local(store, a.run_id, resume=a.resume, progress=None)    # lines into local.out
    finally:
        store.close()
    return 0 if run.status == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
