"""The embedded local executor on small DAGs of the real noop task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagkit import counts, max_overlap, noop_workflow, write
from smartcache.condor import dag as dagmod
from smartcache.condor import local, status


def outputs(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(out.glob("*.txt")) if p.name != "trace.txt"}


def test_fan_out_fan_in_runs_in_order_and_writes_dagman_state(tmp_path):
    out = tmp_path / "out"
    dag_file = write(noop_workflow(out, fan_out=5), tmp_path / "d")
    seen = []
    outcome = local.run_dag(dag_file, progress=False, on_update=seen.append)
    assert (outcome.status, outcome.done, outcome.total, outcome.exit_code) == ("done", 6, 6, 0)
    assert (out / "last-000.txt").read_text() == "last-000\n" + "".join(f"first-{i:03d}\n" for i in range(5))
    assert counts(out) == {f"first-{i:03d}": 1 for i in range(5)} | {"last-000": 1}
    state = status.collect(dag_file)
    assert state.finished and state.exit_code == 0 and state.counts == {"done": 6}
    assert [n.partition for n in state.nodes][:2] == ["p0", "p1"] and state.nodes[-1].task == "last"
    assert seen and all(n.status == "done" for n in seen[-1])
    assert not dagmod.rescue_files(dag_file)
    assert (tmp_path / "d" / "logs" / "last-000.out").exists()


def test_retry_then_success_and_retry_counts(tmp_path):
    out = tmp_path / "out"
    wf = noop_workflow(out, fan_out=2, retries=2, flags={1: ["--fail-times", "2"]})
    dag_file = write(wf, tmp_path / "d")
    assert local.run_dag(dag_file, progress=False).status == "done"
    assert counts(out)["first-001"] == 3 and counts(out)["first-000"] == 1
    nodes = {n.node: n for n in status.collect(dag_file).nodes}
    assert nodes["first-001"].retries == 2 and nodes["first-001"].status == "done"


def test_failure_leaves_rescue_and_resume_redoes_only_unfinished(tmp_path):
    out, cause = tmp_path / "out", tmp_path / "broken"
    cause.write_text("x")
    wf = noop_workflow(out, fan_out=4, retries=1, flags={2: ["--fail-while", str(cause)]})
    dag_file = write(wf, tmp_path / "d")
    outcome = local.run_dag(dag_file, progress=False)
    assert (outcome.status, outcome.failed, outcome.exit_code) == ("failed", ["first-002"], 1)
    nodes = {n.node: n for n in status.collect(dag_file).nodes}
    assert nodes["first-002"].status == "failed" and "exit code 1" in nodes["first-002"].message
    assert "failing while" in nodes["first-002"].message                  # the task's own last stderr line
    assert nodes["last-000"].status == "idle" and "ancestor failed" in nodes["last-000"].message
    assert dagmod.rescued(dag_file) == {"first-000", "first-001", "first-003"}
    assert counts(out)["first-002"] == 2 and "last-000" not in counts(out)

    cause.unlink()                                                        # fix the cause, then resume
    assert local.run_dag(dag_file, resume=True, progress=False).status == "done"
    assert counts(out) == {"first-000": 1, "first-001": 1, "first-002": 3, "first-003": 1, "last-000": 1}
    assert status.collect(dag_file).counts == {"done": 5}


def test_throttle_and_cpu_limit(tmp_path):
    out = tmp_path / "out"
    dag_file = write(noop_workflow(out, fan_out=3, max_jobs=1, sleep=0.15), tmp_path / "d")
    assert local.run_dag(dag_file, progress=False, max_cpus=4).status == "done"
    assert max_overlap(out / "trace.txt", "first") == 1                   # MAXJOBS first 1

    out2 = tmp_path / "out2"
    dag_file = write(noop_workflow(out2, fan_out=4, sleep=0.3), tmp_path / "d2")
    assert local.run_dag(dag_file, progress=False, max_cpus=2).status == "done"
    assert max_overlap(out2 / "trace.txt", "first") == 2                  # two at once, never more


def _start(dag_file: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "smartcache.condor.local", str(dag_file), "--no-progress",
                             "--cpus", "1", *extra], stderr=subprocess.PIPE)


def _wait_for_done(dag_file: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    journal = local.journal_path(dag_file)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    raise AssertionError("executor made no progress")


def _wait_for_no_node(out: Path, timeout: float = 60) -> None:
    """Until no process runs a node writing to ``out`` (a killed executor's nodes die with it: PDEATHSIG)."""
    marker = str(out).encode()
    deadline = time.time() + timeout
    while time.time() < deadline:
        running = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if marker in proc.joinpath("cmdline").read_bytes():
                    running.append(proc.name)
            except OSError:
                pass                                    # gone meanwhile
        if not running:
            return
        time.sleep(0.05)
    raise AssertionError(f"nodes writing to {out} still running: pids {running}")


def test_killed_executor_resumes_with_identical_results(tmp_path):
    clean_out = tmp_path / "clean"
    clean = local.run_dag(write(noop_workflow(clean_out, fan_out=4), tmp_path / "clean_d"), progress=False)
    assert clean.status == "done"

    out, go = tmp_path / "out", tmp_path / "go"
    # one CPU: first-000 and first-001 finish, then first-002 waits for "go": the kill lands mid-run
    dag_file = write(noop_workflow(out, fan_out=4, flags={2: ["--wait-for", str(go)]}), tmp_path / "d")
    proc = _start(dag_file)
    _wait_for_done(dag_file, 2, proc)
    proc.kill()                                                            # SIGKILL: no chance to clean up
    proc.wait()
    go.touch()                                       # a node still running could now finish (it must not)
    _wait_for_no_node(out)
    done_before = set(dagmod.read_rescue(local.journal_path(dag_file)))
    ran_before = counts(out)
    assert done_before == {"first-000", "first-001"}

    assert local.run_dag(dag_file, resume=True, progress=False).status == "done"
    assert outputs(out) == outputs(clean_out)
    after = counts(out)
    assert all(after[n] == 1 for n in done_before)                         # finished nodes never ran again
    killed = set(ran_before) - done_before                                 # the node killed mid-run ran again
    assert all(after[n] == 2 for n in killed) and len(killed) <= 1


def test_interrupt_writes_rescue_then_resume_completes(tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    # one CPU: first-000 finishes, then first-001 waits for "go": the interrupt lands mid-run
    dag_file = write(noop_workflow(out, fan_out=3, flags={1: ["--wait-for", str(go)]}), tmp_path / "d")
    proc = _start(dag_file)
    _wait_for_done(dag_file, 1, proc)
    proc.send_signal(signal.SIGINT)                                        # Ctrl-C
    assert proc.wait(timeout=60) == 2
    assert "cancelled" in proc.stderr.read().decode()
    rescued = dagmod.rescued(dag_file)
    assert rescued == {"first-000"}
    state = status.collect(dag_file)
    assert state.exit_code == 2 and not any(n.status == "running" for n in state.nodes)
    go.touch()
    proc = _start(dag_file, "--resume")
    assert proc.wait(timeout=60) == 0
    assert all(counts(out)[n] == 1 for n in rescued) and counts(out)["last-000"] == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PDEATHSIG is Linux-only")
def test_nodes_die_with_a_killed_executor(tmp_path):
    out = tmp_path / "out"
    dag_file = write(noop_workflow(out, fan_out=1, sleep=30), tmp_path / "d")
    proc = _start(dag_file)
    deadline = time.time() + 30
    children = []
    while not children and time.time() < deadline:
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        time.sleep(0.05)
    assert children
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/proc/{children[0]}").exists() and \
            Path(f"/proc/{children[0]}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.05)
    alive = Path(f"/proc/{children[0]}").exists() and \
        Path(f"/proc/{children[0]}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    if alive:
        os.kill(children[0], signal.SIGKILL)
    assert not alive


# -- progress off a terminal ----------------------------------------------------------------------
def test_off_a_terminal_a_line_says_each_node_that_finishes(tmp_path, capsys):
    out = tmp_path / "out"
    dag_file = write(noop_workflow(out, fan_out=3), tmp_path / "d")
    assert local.run_dag(dag_file).status == "done"            # stderr is captured here: not a terminal
    lines = [ln for ln in capsys.readouterr().err.splitlines() if " d: " in ln]
    named = [part.split()[0] for ln in lines for part in ln.split("; ", 1)[1].split(", ")]
    assert sorted(named) == ["first-000", "first-001", "first-002", "last-000"]   # each once
    assert lines[-1].endswith("d: 4/4 done, 0 running, 0 failed; last-000 done")
    assert all(ln[:8].count(":") == 2 for ln in lines)                         # HH:MM:SS first


def test_off_a_terminal_failures_and_retries_are_said_and_no_progress_is_silent(tmp_path, capsys):
    out = tmp_path / "out"
    wf = noop_workflow(out, fan_out=2, retries=1, flags={1: ["--fail-times", "5"]})
    dag_file = write(wf, tmp_path / "d")
    assert local.run_dag(dag_file, max_cpus=1).status == "failed"
    err = capsys.readouterr().err
    assert "first-001 retrying" in err and "1 failed; first-001 failed" in err
    dag_file = write(noop_workflow(tmp_path / "out2", fan_out=2), tmp_path / "d2")
    assert local.run_dag(dag_file, progress=False).status == "done"
    assert capsys.readouterr().err == ""


def test_progress_lines_beat_every_30_seconds_while_nothing_finishes():
    import io

    from smartcache.condor.progresslines import ProgressLines
    now = [0.0]
    out = io.StringIO()
    lines = ProgressLines("run 7", 10, stream=out, clock=lambda: now[0])
    counts = {"done": 2, "running": 3, "failed": 0}
    now[0] = 29.0
    assert not lines.update(counts)                      # nothing finished, not 30 s yet
    now[0] = 30.5
    assert lines.update(counts)                          # the heartbeat
    assert not lines.update(counts)
    assert lines.update({**counts, "done": 3}, [("reduce-1", "done")])       # a node finished: at once
    many = [(f"n{i}", "done") for i in range(5)]
    assert lines.update(counts, many)
    text = out.getvalue().splitlines()
    assert [ln.split(" ", 1)[1] for ln in text] == [
        "run 7: 2/10 done, 3 running, 0 failed",
        "run 7: 3/10 done, 3 running, 0 failed; reduce-1 done",
        "run 7: 2/10 done, 3 running, 0 failed; n0 done, n1 done, n2 done and 2 more"]
