"""The embedded local executor: runs a written DAG directory with local processes.

It runs exactly what DAGMan would: the nodes, edges, RETRY counts and MAXJOBS throttles of the
``.dag`` (read by :func:`smartcache.condor.dag.read`), each node's command, directory, environment
and output files expanded from its ``.sub`` with its VARS by HTCondor's own submit language
(``htcondor2.Submit.expand``). Up to ``os.cpu_count()`` CPUs of ``request_cpus`` run at once.

State it leaves, in DAGMan's formats so either executor can pick up a run: the node status file,
``<dag>.metrics`` when it ends, a rescue file when it ends unfinished, and ``<dag>.local.done``
(one ``DONE <node>`` line per finished node, appended as nodes finish) so that even a killed
executor resumes with only the unfinished nodes. Children die with the executor (PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import argparse
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import htcondor2
from tqdm import tqdm

from smartcache.condor import dag as dagmod
from smartcache.condor import status as st
from smartcache.condor.progresslines import ProgressLines
from smartcache.condor.submitdesc import parse_environment, split_args

JOURNAL_SUFFIX = ".local.done"
_CODES = {"idle": st.NOT_READY, "ready": st.READY, "running": st.SUBMITTED, "done": st.DONE,
          "failed": st.ERROR, "futile": st.FUTILE, "retrying": st.READY}
try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):   # not Linux: children then outlive a killed executor
    _PRCTL = None


class Interrupted(Exception):
    """SIGTERM (cancel) or SIGINT (Ctrl-C) reached the executor."""


@dataclass
class Outcome:
    status: str                          # done | failed | cancelled
    done: int
    total: int
    failed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"done": 0, "failed": 1}.get(self.status, 2)


@dataclass
class _Running:
    proc: subprocess.Popen
    fd: int | None
    cpus: int
    started: float


def journal_path(dag_file: Path) -> Path:
    return Path(str(dag_file) + JOURNAL_SUFFIX)


def finished_nodes(dag_file: Path) -> set[str]:
    """Nodes a previous (possibly killed) run finished: rescue file plus the local journal."""
    done = dagmod.rescued(dag_file)
    path = journal_path(dag_file)
    if path.exists():
        done |= dagmod.read_rescue(path)
    return done


class LocalExecutor:
    def __init__(self, dag_file: Path, *, max_cpus: int | None = None, resume: bool = False,
                 progress: bool | None = None, on_update: Callable[[list[st.NodeState]], None] | None = None,
                 update_seconds: float = 1.0):
        self.spec = dagmod.read(dag_file)
        self.max_cpus = max(1, max_cpus or os.cpu_count() or 1)
        self.on_update = on_update
        self.update_seconds = update_seconds
        # None: a bar on a terminal, else plain lines (a log shows where the run is); False: silent
        tty = sys.stderr.isatty()
        self.progress = tty if progress is None else progress
        self.lines = progress is None and not tty
        self.order = self.spec.order()
        done = finished_nodes(self.spec.path) if resume else set()
        if not resume:
            journal_path(self.spec.path).unlink(missing_ok=True)
        self.state = {n: "done" if (n in done or self.spec.nodes[n].done) else "idle" for n in self.order}
        self.tries = {n: 0 for n in self.order}
        self.message: dict[str, str] = {}
        self.running: dict[str, _Running] = {}
        self._dirty = True
        self._last_write = 0.0
        self._interrupted = False

    # -- public ---------------------------------------------------------------------------
    def run(self) -> Outcome:
        started = time.time()
        main = threading.current_thread() is threading.main_thread()
        old = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
        bar = tqdm(total=len(self.order), initial=self._count("done"), unit="node", file=sys.stderr,
                   desc=self.spec.dir.name, disable=not self.progress, dynamic_ncols=True)
        lines = ProgressLines(self.spec.dir.name, len(self.order)) if self.lines else None
        status = "done"
        self._journal = open(journal_path(self.spec.path), "a")
        try:
            while self._go_on():
                ended = []
                for name, rc in self._wait():
                    self._finished(name, rc)
                    bar.update(1 if self.state[name] == "done" else 0)
                    ended.append((name, self.state[name]))
                bar.set_postfix(running=len(self.running), failed=self._count("failed"), refresh=False)
                if lines is not None:
                    lines.update({s: self._count(s) for s in ("done", "running", "failed")}, ended)
                self._publish()
            if self._count("done") < len(self.order):
                status = "failed"
        except (KeyboardInterrupt, Interrupted):
            status = "cancelled"
            self._stop_all()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self._journal.close()
            bar.close()
        return self._end(status, started)

    def _on_signal(self, signum, frame) -> None:
        # Raising stops a wait at once; the flag makes sure the loop stops even when the exception
        # is swallowed -- a signal landing in Popen's fork runs this inside an at-fork hook, whose
        # exceptions Python ignores ("Exception ignored in: _releaseLock").
        self._interrupted = True
        raise Interrupted()

    def _go_on(self) -> bool:
        if self._interrupted:
            raise Interrupted()
        return self._launch_ready() or bool(self.running)

    # -- scheduling -----------------------------------------------------------------------
    def _launch_ready(self) -> bool:
        """Start what may start now; False once nothing runs and nothing can ever start."""
        used = sum(r.cpus for r in self.running.values())
        per_cat: dict[str, int] = {}
        for name in self.running:
            cat = self.spec.nodes[name].category
            per_cat[cat] = per_cat.get(cat, 0) + 1
        for name in self.order:
            if self.state[name] not in ("idle", "retrying"):
                continue
            node = self.spec.nodes[name]
            if any(self.state[p] != "done" for p in node.parents):
                continue
            if node.noop:
                self.state[name], self._dirty = "done", True
                continue
            limit = self.spec.max_jobs.get(node.category) if node.category else None
            if limit is not None and per_cat.get(node.category, 0) >= limit:
                continue
            if used >= self.max_cpus:
                break
            cmd = node_command(node, self.spec.dir, self.tries[name])
            cpus = min(cmd["cpus"], self.max_cpus)
            if used + cpus > self.max_cpus:
                continue
            self.running[name] = self._start(cmd)
            self.state[name], self._dirty = "running", True
            used += cpus
            per_cat[node.category] = per_cat.get(node.category, 0) + 1
        return bool(self.running)

    def _start(self, cmd: dict) -> _Running:
        for key in ("out", "err"):
            cmd[key].parent.mkdir(parents=True, exist_ok=True)
        with open(cmd["out"], "wb") as out, open(cmd["err"], "wb") as err:
            proc = subprocess.Popen(cmd["argv"], cwd=cmd["cwd"], env=cmd["env"], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True, preexec_fn=_die_with_parent)
        try:
            fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            fd = None
        return _Running(proc, fd, cmd["cpus"], time.time())

    def _wait(self) -> list[tuple[str, int]]:
        """Block until a child exits (or it is time to publish); return (node, exit code) pairs."""
        fds = {r.fd: n for n, r in self.running.items() if r.fd is not None}
        timeout = self.update_seconds if len(fds) == len(self.running) else 0.05
        if fds:
            select.select(list(fds), [], [], timeout)
        else:
            time.sleep(timeout)
        ended = []
        for name, r in list(self.running.items()):
            rc = r.proc.poll()
            if rc is not None:
                if r.fd is not None:
                    os.close(r.fd)
                del self.running[name]
                ended.append((name, rc))
        return ended

    def _finished(self, name: str, rc: int) -> None:
        self._dirty = True
        if rc == 0:
            self.state[name] = "done"
            self.message.pop(name, None)
            self._journal.write(f"DONE {name}\n")
            self._journal.flush()
            return
        self.message[name] = _failure_message(name, rc, self.spec.dir)
        if self.tries[name] < self.spec.nodes[name].retries:
            self.tries[name] += 1
            self.state[name] = "retrying"
            return
        self.state[name] = "failed"
        for child in _descendants(self.spec, name):
            if self.state[child] in ("idle", "retrying"):
                self.state[child] = "futile"

    def _stop_all(self) -> None:
        """Stop every running node; one that had already succeeded still counts as done."""
        finished = {n: r.proc.poll() for n, r in self.running.items()}
        for name, r in self.running.items():
            if finished[name] is None:
                _signal_group(r.proc, signal.SIGTERM)
        deadline = time.time() + 5
        for name, r in self.running.items():
            try:
                r.proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(r.proc, signal.SIGKILL)
                r.proc.wait()
            if r.fd is not None:
                os.close(r.fd)
            if finished[name] == 0:
                self._finished(name, 0)
            else:
                self.state[name] = "idle"
        self.running.clear()

    # -- state out --------------------------------------------------------------------------
    def _count(self, state: str) -> int:
        return sum(1 for s in self.state.values() if s == state)

    def node_states(self) -> list[st.NodeState]:
        out = []
        for name in self.order:
            s = self.state[name]
            node = self.spec.nodes[name]
            status = {"futile": "idle", "ready": "idle"}.get(s, s)
            msg = "will not run: an ancestor failed" if s == "futile" else self.message.get(name)
            out.append(st.NodeState(name, node.layer, node.vars.get("partition") or None, status,
                                    self.tries[name], msg))
        return out

    def _publish(self, force: bool = False, dag_status: int = st.SUBMITTED) -> None:
        now = time.time()
        if not force and (not self._dirty or now - self._last_write < self.update_seconds):
            return
        rows = []
        for name in self.order:
            s = self.state[name]
            if s == "idle" and all(self.state[p] == "done" for p in self.spec.nodes[name].parents):
                s = "ready"
            rows.append((name, _CODES[s], self.message.get(name, ""), self.tries[name]))
        st.write_status_file(self.spec.status_file or self.spec.dir / dagmod.STATUS_FILE, rows, dag_status,
                             next_update=now + self.update_seconds)
        if self.on_update is not None:
            self.on_update(self.node_states())
        self._dirty, self._last_write = False, now

    def _end(self, status: str, started: float) -> Outcome:
        failed = [n for n in self.order if self.state[n] == "failed"]
        done = self._count("done")
        dag_status = st.DONE if status == "done" else st.ERROR
        if done < len(self.order):
            dagmod.write_rescue(self.spec.path, (n for n in self.order if self.state[n] == "done"),
                                failed, total=len(self.order))
        self._publish(force=True, dag_status=dag_status)
        outcome = Outcome(status, done, len(self.order), failed)
        # DAGMan's metrics file, with its exit code (0 done, 1 failed) and our 2 for "interrupted"
        metrics = {"client": "smartcache-local", "exitcode": outcome.exit_code, "DagStatus": outcome.exit_code,
                   "start_time": started, "end_time": time.time(), "duration": time.time() - started,
                   "jobs": len(self.order), "jobs_succeeded": done, "jobs_failed": len(failed)}
        Path(str(self.spec.path) + ".metrics").write_text(json.dumps(metrics, indent=1) + "\n")
        return outcome


def node_command(node: dagmod.Node, dag_dir: Path, retry: int = 0) -> dict:
    """A node's argv, cwd, env, output files and CPUs: its ``.sub`` expanded with its VARS (and
    ``$(JOB)``/``$(RETRY)``, as DAGMan defines them) by HTCondor's submit language."""
    sub = htcondor2.Submit(node.submit_file.read_text())
    for key, value in node.vars.items():
        sub[key] = value
    sub["JOB"], sub["RETRY"] = node.name, str(retry)

    def get(key: str, default: str = "") -> str:
        return sub.expand(key) if key in sub else default
    iwd = dag_dir / get("initialdir", ".")
    return {"argv": [get("executable"), *split_args(get("arguments"))], "cwd": iwd,
            "env": {**os.environ, **parse_environment(get("environment"))},
            "out": iwd / get("output", os.devnull), "err": iwd / get("error", os.devnull),
            "cpus": int(get("request_cpus", "1") or 1)}


def _descendants(spec: dagmod.DagSpec, name: str) -> set[str]:
    seen, stack = set(), list(spec.nodes[name].children)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(spec.nodes[n].children)
    return seen


def _failure_message(name: str, rc: int, dag_dir: Path) -> str:
    what = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
    err = dag_dir / "logs" / f"{name}.err"
    try:
        last = [ln for ln in err.read_text(errors="replace").splitlines() if ln.strip()][-1:]
    except OSError:
        last = []
    return f"{what}: {last[0][:300]}" if last else what


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)   # PR_SET_PDEATHSIG


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):   # already gone: nothing to signal
        os.killpg(proc.pid, sig)    # the node's own session: its children go too


def run_dag(dag_file: Path, **kwargs) -> Outcome:
    """Run (or with ``resume=True`` continue) the DAG in ``dag_file`` locally."""
    return LocalExecutor(dag_file, **kwargs).run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m smartcache.condor.local", description=__doc__.splitlines()[0])
    p.add_argument("dag_file", type=Path)
    p.add_argument("--resume", action="store_true", help="redo only the nodes a previous run did not finish")
    p.add_argument("--cpus", type=int, default=None, help="CPUs to use (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no bar (terminal) or lines (log) of progress")
    a = p.parse_args(argv)
    outcome = run_dag(a.dag_file, resume=a.resume, max_cpus=a.cpus, progress=False if a.no_progress else None)
    print(f"{outcome.status}: {outcome.done}/{outcome.total} nodes done"
          + (f"; failed: {', '.join(outcome.failed)}" if outcome.failed else ""), file=sys.stderr)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
