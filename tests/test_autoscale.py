"""The elastic provisioner: the pure decision function (table of cases, flapping demand), the
command backend, and (marked condor) workers added and removed on the real pool."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from smartcache.catalog.errors import ConfigError
from smartcache.condor.autoscale import Demand, Policy, State, Supply, decide, wanted_workers
from smartcache.condor.workers import CommandBackend, WorkerError

P = Policy(min_workers=0, max_workers=5, worker_cpus=2, worker_memory_mb=4000,
           up_cooldown=10, idle_timeout=30, down_cooldown=0)


def D(idle=0, cpus=None, mem=None, running=0):
    return Demand(idle, idle if cpus is None else cpus, 100 * idle if mem is None else mem, running)


# demand, supply, policy, wanted workers
WANTED = [
    ("nothing to do", D(), Supply(), P, 0),
    ("idle jobs, no workers", D(3), Supply(), P, 2),                     # 3 cpu / 2 per worker
    ("idle jobs fit free cpus", D(2), Supply(2, 1, 2, 8000), P, 2),
    ("some do not fit", D(5), Supply(2, 2, 1, 4000), P, 4),              # 4 cpu short -> +2
    ("memory-bound", D(2, cpus=2, mem=9000), Supply(), P, 3),            # 9000 MB / 4000
    ("capped at max", D(40), Supply(1, 1, 0, 0), P, 5),
    ("idle workers, no demand", D(0, running=2), Supply(4, 2, 4, 8000), P, 2),
    ("all idle, min 1", D(), Supply(3, 0, 6, 12000), Policy(min_workers=1, max_workers=5), 1),
    ("below min", D(), Supply(), Policy(min_workers=2, max_workers=5), 2),
    ("spare beyond waiting jobs", D(1), Supply(3, 0, 6, 12000), P, 1),   # keep 1 worker for 1 job
    ("starting workers count as supply", D(2), Supply(1, 1, 2, 4000), P, 1),
]


@pytest.mark.parametrize("name,demand,supply,policy,expected", WANTED, ids=[w[0] for w in WANTED])
def test_wanted_workers(name, demand, supply, policy, expected):
    wanted, reason = wanted_workers(demand, supply, policy)
    assert wanted == expected, reason
    assert reason


def test_scale_up_is_immediate_then_cooled_down():
    d = decide(D(4), Supply(), P, State(), now=100)
    assert (d.action, d.target) == ("up", 2)
    # the new workers have not appeared yet and more jobs came: wait for the cooldown
    d2 = decide(D(8), Supply(2, 2, 4, 8000), P, d.state, now=105)
    assert (d2.action, d2.target) == ("hold", 2) and "cooldown" in d2.reason
    d3 = decide(D(8), Supply(2, 2, 4, 8000), P, d2.state, now=111)
    assert (d3.action, d3.target) == ("up", 4)


def test_scale_down_waits_for_idle_timeout_without_a_break():
    s, state = Supply(3, 1, 4, 8000), State(last_up=0, last_change=0)
    d = decide(D(0, running=1), s, P, state, now=100)
    assert d.action == "hold" and d.state.low_since == 100
    d = decide(D(0, running=1), s, P, d.state, now=129)
    assert d.action == "hold"
    d = decide(D(0, running=1), s, P, d.state, now=130.5)
    assert (d.action, d.target) == ("down", 1)          # the busy worker stays
    assert d.state.low_since is None


def test_flapping_demand_never_shrinks_and_grows_at_most_once_per_cooldown():
    """Demand that comes and goes every cycle: no start/stop churn."""
    state, workers, changes = State(), 0, []
    for t in range(0, 300, 2):
        demand = D(4) if (t // 2) % 2 == 0 else D(0, running=0)
        supply = Supply(workers, 0, 2 * workers, 4000 * workers)
        d = decide(demand, supply, P, state, now=t)
        state = d.state
        if d.action != "hold":
            changes.append((t, d.action, d.target))
            workers = d.target
    assert changes and all(a == "up" for _, a, _ in changes)
    assert workers == 2
    ups = [t for t, a, _ in changes if a == "up"]
    assert all(b - a >= P.up_cooldown for a, b in zip(ups, ups[1:]))


def test_a_steady_surplus_after_flapping_does_shrink():
    state = State(last_up=0, last_change=0)
    for t in range(0, 20, 2):                       # flapping: the timer keeps restarting
        demand = D(4) if (t // 2) % 2 == 0 else D()
        state = decide(demand, Supply(2, 0, 4, 8000), P, state, now=t).state
    for t in range(20, 60, 2):                      # then quiet
        d = decide(D(), Supply(2, 0, 4, 8000), P, state, now=t)
        state = d.state
        if d.action == "down":
            break
    # the surplus has lasted since the last low sample of the flapping phase (t=18)
    assert (d.action, d.target) == ("down", 0) and t == 18 + P.idle_timeout


def test_min_and_max_override_cooldown_and_hysteresis():
    p = Policy(min_workers=2, max_workers=3, up_cooldown=100, idle_timeout=100)
    d = decide(D(), Supply(0), p, State(last_up=99, last_change=99), now=100)
    assert (d.action, d.target) == ("up", 2)
    d = decide(D(), Supply(5, 5, 0, 0), p, State(), now=100)   # above max: shrink now
    assert (d.action, d.target) == ("down", 3)


def test_down_cooldown_after_a_change():
    p = Policy(max_workers=5, idle_timeout=0, down_cooldown=50)
    d = decide(D(), Supply(2, 0, 2, 4096), p, State(last_up=10, last_change=10), now=30)
    assert d.action == "hold" and "cooldown" in d.reason
    d = decide(D(), Supply(2, 0, 2, 4096), p, d.state, now=61)
    assert (d.action, d.target) == ("down", 0)


def test_demand_from_job_ads():
    p = Policy(worker_cpus=2, worker_memory_mb=1000, idle_grace=5)
    jobs = [
        {"JobStatus": 1, "RequestCpus": 1, "RequestMemory": 100, "EnteredCurrentStatus": 0},
        {"JobStatus": 1, "RequestCpus": 2, "RequestMemory": 500, "EnteredCurrentStatus": 0},
        {"JobStatus": 1, "RequestCpus": 4, "RequestMemory": 100, "EnteredCurrentStatus": 0},   # too big
        {"JobStatus": 1, "RequestCpus": 1, "RequestMemory": 100, "EnteredCurrentStatus": 98},  # too new
        {"JobStatus": 2, "RequestCpus": 1},
        {"JobStatus": 5, "RequestCpus": 1},                                                    # held
        {"JobStatus": 1, "RequestCpus": None, "RequestMemory": "expr", "QDate": 0},
    ]
    d = Demand.from_jobs(jobs, p, now=100)
    assert (d.idle_jobs, d.idle_cpus, d.idle_memory_mb, d.running_jobs, d.unfit_jobs) == (3, 4, 600, 1, 1)


@pytest.mark.parametrize("kwargs", [dict(min_workers=3, max_workers=2), dict(min_workers=-1),
                                    dict(worker_cpus=0), dict(up_cooldown=-1)])
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ConfigError):
        Policy(**kwargs)


def test_command_backend_runs_the_command_with_the_count(tmp_path):
    out = tmp_path / "replicas"
    cmd = f"{sys.executable} -c 'import sys; open(sys.argv[1], \"w\").write(sys.argv[2])' {out} {{n}}"
    CommandBackend(cmd).scale_to(7)
    assert out.read_text() == "7"
    with pytest.raises(WorkerError):
        CommandBackend(f"{sys.executable} -c 'raise SystemExit(3)' {{n}}").scale_to(1)
    with pytest.raises(ConfigError):
        CommandBackend("kubectl scale deployment wn --replicas 3")


# -- the real pool (root): workers come and go with the work ---------------------------------

NODE_SECONDS = [6, 8, 10, 12, 14]          # N parallel nodes, staggered so workers free up in turn
NODE_SUB = """universe = vanilla
executable = /bin/sleep
arguments = $(secs)
log = $(node).log
output = $(node).out
error = $(node).err
request_cpus = 1
request_memory = 64M
request_disk = 1M
# Only elastic workers may run them: the base startd is the static part of the pool.
requirements = TARGET.SmartcacheElastic =?= True
batch_name = smartcache-autoscale-test
+SmartcacheRun = "autoscale-test"
+SmartcacheTask = "sleep"
queue
"""


def _write_dag(d: Path) -> Path:
    (d / "node.sub").write_text(NODE_SUB)
    lines = []
    for i, secs in enumerate(NODE_SECONDS):
        lines += [f"JOB n{i} node.sub", f'VARS n{i} secs="{secs}" node="n{i}"']
    (d / "fan.dag").write_text("\n".join(lines) + "\n")
    return d / "fan.dag"


@pytest.mark.condor
@pytest.mark.slow
def test_workers_follow_the_work_and_never_leave_with_a_job(condor_pool, condor_tmp_path):
    import time

    import htcondor2

    from smartcache.catalog.config import load_config
    from smartcache.condor import collector, pool
    from smartcache.condor.autoscale_log import read_decisions
    from smartcache.condor.provision import Autoscaler, Metrics
    from smartcache.condor.workers import LocalBackend

    d, home = condor_tmp_path, condor_tmp_path / "home"
    cfg = load_config(env={}, home=home)
    policy = Policy(max_workers=3, worker_cpus=1, worker_memory_mb=512, up_cooldown=2, idle_timeout=6)
    backend = LocalBackend(pool.pool_root(), worker_cpus=1, worker_memory_mb=512, idle_timeout=120)
    assert backend.workers() == [], "the pool must start with zero extra workers"
    scaler = Autoscaler(cfg, policy, backend, metrics=Metrics(home / "pool" / "autoscale.prom"))

    sub = htcondor2.Submit.from_dag(str(_write_dag(d)), {"force": True, "usedagdir": True})
    cluster = htcondor2.Schedd().submit(sub).cluster()
    t0 = time.monotonic()
    peak, dag_done_at, last_busy_at = 0, None, None
    try:
        while time.monotonic() - t0 < 170:
            decision = scaler.step()
            assert decision.action != "error", decision.reason
            slots = collector.query_slots(cfg.condor, "SmartcacheElastic =?= True")
            if any(s.busy for s in slots):
                last_busy_at = time.monotonic()
            peak = max(peak, len([w for w in backend.workers() if not w.retiring]))
            if dag_done_at is None and not htcondor2.Schedd().query(
                    f"ClusterId == {cluster}", ["JobStatus"]):
                dag_done_at = time.monotonic()
            if dag_done_at is not None and not backend.workers() and not slots:
                break
            time.sleep(1)
        else:
            pytest.fail(f"not done after 170 s: dag done {dag_done_at is not None}, "
                        f"workers {backend.workers()}, last {scaler.history[-1]}")
    finally:
        htcondor2.Schedd().act(htcondor2.JobAction.Remove, f"ClusterId == {cluster} || DAGManJobId == {cluster}")
    gone_at = time.monotonic()

    assert "EXITING WITH STATUS 0" in (d / "fan.dag.dagman.out").read_text()
    assert peak == policy.max_workers                       # grew to the max, never beyond
    for i in range(len(NODE_SECONDS)):                      # every node ran once, to the end
        log = (d / f"n{i}.log").read_text()
        assert log.count("Job executing on host") == 1, log
        assert "Job was evicted" not in log and "Job was aborted" not in log
        assert "Normal termination (return value 0)" in log
    assert gone_at - last_busy_at >= policy.idle_timeout    # the last ones waited out the idle timeout
    # an idle worker was removed while others still ran jobs (and none of those jobs was hurt)
    assert any(r["action"] == "down" and r["running_jobs"] > 0 for r in scaler.history), scaler.history
    actions = [r["action"] for r in read_decisions(home, 1000)]
    assert "up" in actions and "down" in actions
    assert "smartcache_autoscale_target_workers" in (home / "pool" / "autoscale.prom").read_text()


def test_cli_autoscale_command_backend_needs_a_command(tmp_path):
    from click.testing import CliRunner

    from smartcache.catalog.config import load_config
    from smartcache.submit.cli.group import SmartcacheGroup
    from smartcache.submit.cli.pool import commands

    group = SmartcacheGroup(commands={c.name: c for c in commands})
    res = CliRunner().invoke(group, ["pool", "autoscale", "--backend", "command"],
                             obj=load_config(env={}, home=tmp_path))
    assert res.exit_code == 1 and "--command" in res.output


@pytest.mark.condor
def test_cli_autoscale_logs_decisions_that_status_shows(condor_pool, tmp_path):
    from click.testing import CliRunner

    from smartcache.catalog.config import load_config
    from smartcache.submit.cli.group import SmartcacheGroup
    from smartcache.submit.cli.pool import commands

    group = SmartcacheGroup(commands={c.name: c for c in commands})
    invoke = lambda *a: CliRunner().invoke(group, ["pool", *a], obj=load_config(env={}, home=tmp_path))  # noqa: E731
    # nothing queued that matches: two cycles, both hold at zero workers
    res = invoke("autoscale", "--cycles", "2", "--interval", "0.2", "--max", "2",
                 "--constraint", 'SmartcacheRun =?= "no-such-run"')
    assert res.exit_code == 0, res.output
    data = json.loads(invoke("status", "--json").output)
    last = data["autoscale"][-1]
    assert (last["action"], last["target"], last["workers"]) == ("hold", 0, 0)
    assert "smartcache_autoscale_decisions_total" in (tmp_path / "pool" / "autoscale.prom").read_text()


@pytest.mark.condor
def test_command_backend_is_asked_for_workers_that_idle_jobs_need(condor_pool, condor_tmp_path):
    import htcondor2

    from smartcache.catalog.config import load_config
    from smartcache.condor.provision import Autoscaler

    d = condor_tmp_path
    out = d / "replicas"
    cmd = f"{sys.executable} -c 'import sys; open(sys.argv[1], \"a\").write(sys.argv[2] + \"\\n\")' {out} {{n}}"
    run = f"cmd-backend-{d.name}"
    scaler = Autoscaler(load_config(env={}, home=d / "home"),
                        Policy(max_workers=5, worker_cpus=2, up_cooldown=60, idle_timeout=60),
                        CommandBackend(cmd), constraint=f'SmartcacheRun =?= "{run}"')
    schedd = htcondor2.Schedd()
    sub = htcondor2.Submit({"executable": "/bin/true", "request_cpus": "1", "request_memory": "16M",
                            "requirements": "TARGET.SmartcacheElastic =?= True && false",  # never runs
                            "+SmartcacheRun": f'"{run}"', "+SmartcacheTask": '"noop"', "initialdir": str(d)})
    cluster = schedd.submit(sub, count=3).cluster()
    try:
        first = scaler.step()           # 3 idle cpus / 2 per worker -> 2 workers asked for
        second = scaler.step()          # none has appeared yet, but they are pending: hold
    finally:
        schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {cluster}")
    assert (first.action, first.target) == ("up", 2), first.reason
    assert second.action == "hold", second.reason
    assert out.read_text().split() == ["2"]
