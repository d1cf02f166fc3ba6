"""DAG text, submit files and DOT of smartcache workflows, written into tmp_path (no pool needed)."""

from __future__ import annotations

import re
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from smartcache.catalog.config import load_config
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.condor import dag as dagmod
from smartcache.condor import local
from smartcache.condor.submitdesc import join_args, quote_args, split_args
from smartcache.submit import workflows as W


def make_raw(root: Path, first: date, days: int, parts: int = 1) -> list[date]:
    out = []
    for i in range(days):
        d = first + timedelta(days=i)
        for p in range(parts):
            f = root / f"year={d.year}/month={d.month}/day={d.day}/part-{p:05d}.avro"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"")
        out.append(d)
    return out


@pytest.fixture
def cfg(tmp_path):
    return load_config(env={"SMARTCACHE_HOME": str(tmp_path / "home")})


def lines(path: Path, keyword: str) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.split(" ", 1)[0] == keyword]


def test_reduce_dag_nodes_edges_and_throttle(cfg, tmp_path):
    days = make_raw(cfg.data_root / "raw", date(2026, 9, 1), 61, parts=2)   # September + October
    plan = W.reduce(cfg, months=2)
    wf = plan.make(7)
    dag_file = dagmod.write(dagmod.build(wf, tmp_path / "d"), tmp_path / "d")

    jobs = lines(dag_file, "JOB")
    assert len(jobs) == len(days) + 1 == plan.params["partitions"] + 1
    assert jobs[0] == "JOB reduce-000 reduce.sub" and "JOB features-000 features.sub" in jobs
    parent = lines(dag_file, "PARENT")
    assert parent == ["PARENT " + " ".join(f"reduce-{i:03d}" for i in range(len(days))) + " CHILD features-000"]
    assert f"RETRY reduce-000 {W.RETRIES['reduce']}" in lines(dag_file, "RETRY")
    assert f"RETRY features-000 {W.RETRIES['features']}" in lines(dag_file, "RETRY")
    cats = lines(dag_file, "CATEGORY")
    assert len(cats) == len(days) and all(c.endswith(" reduce") for c in cats)
    assert lines(dag_file, "MAXJOBS") == [f"MAXJOBS reduce {cfg.condor.max_jobs}"]
    assert lines(dag_file, "NODE_STATUS_FILE")[0].startswith(f"NODE_STATUS_FILE {dagmod.STATUS_FILE} ")

    varline = next(v for v in lines(dag_file, "VARS") if v.startswith("VARS reduce-000 "))
    assert 'partition="2026-09-01"' in varline
    spec = dagmod.read(dag_file)
    first = spec.nodes["reduce-000"]
    raw = cfg.data_root / "raw" / "year=2026/month=9/day=1"
    assert split_args(f'"{first.vars["sources"]}"') == [str(raw / "part-00000.avro"), str(raw / "part-00001.avro")]
    assert spec.nodes["features-000"].parents == {f"reduce-{i:03d}" for i in range(len(days))}
    assert spec.nodes["features-000"].vars["partition"] == "2026-09-01..2026-10-31"


def test_submit_files_carry_names_resources_and_entry_point(cfg, tmp_path):
    make_raw(cfg.data_root / "raw", date(2026, 10, 1), 3)
    dag_dir = tmp_path / "d"
    dagmod.write(dagmod.build(W.reduce(cfg, months=1).make(7), dag_dir), dag_dir)
    sub = (dag_dir / "reduce.sub").read_text()
    kv = dict(re.match(r"^(\S+) = (.*)$", ln).groups() for ln in sub.splitlines() if " = " in ln)
    assert kv["executable"] == sys.executable
    assert split_args(kv["arguments"]) == ["-m", "smartcache.tasks.reduce", "--catalog-url", cfg.catalog_url,
                                           "--run-id", "7", "--out", str(cfg.data_root), "--no-progress",
                                           "$(sources)"]
    assert kv["batch_name"] == "smartcache-reduce-7"
    assert kv["MY.SmartcacheRun"] == "7"
    assert kv["MY.SmartcacheTask"] == '"reduce"'
    assert kv["MY.SmartcachePartition"] == '"$(partition)"'
    assert kv["request_cpus"] == "1" and kv["request_memory"].endswith("M") and kv["request_disk"]
    assert kv["log"] == "logs/$(JOB).log" and kv["output"] == "logs/$(JOB).out" and kv["error"] == "logs/$(JOB).err"
    assert kv["initialdir"] == str(dag_dir) and kv["should_transfer_files"] == "NO"
    assert "SMARTCACHE_TOKEN" not in sub and "PYTHONUNBUFFERED=1" in kv["environment"]
    assert (dag_dir / "logs").is_dir()

    feats = (dag_dir / "features.sub").read_text()
    fargs = split_args(re.search(r"^arguments = (.*)$", feats, re.M).group(1))
    assert fargs[fargs.index("--from") + 1] == "2026-10-01" and fargs[fargs.index("--to") + 1] == "2026-10-03"
    assert fargs[fargs.index("--name") + 1] == "features/2026-10-01_2026-10-03"
    assert 'MY.SmartcacheTask = "features"' in feats


def test_nodes_see_the_submitters_configuration(cfg, tmp_path):
    """Whatever user a job runs as, a task loading the configuration finds the submitter's."""
    from smartcache.condor.submitdesc import config_env, parse_environment
    wf = W.single(cfg, "push", model="m").make(2)
    dagmod.write(dagmod.build(wf, tmp_path / "d", env=config_env(cfg)), tmp_path / "d")
    env = parse_environment(re.search(r"^environment = (.*)$", (tmp_path / "d" / "push.sub").read_text(),
                                      re.M).group(1))
    assert env["SMARTCACHE_HOME"] == str(cfg.home) and env["SMARTCACHE_CATALOG_URL"] == cfg.catalog_url
    assert load_config(env=env).data_root == cfg.data_root


def test_node_command_expands_vars_like_condor(cfg, tmp_path):
    """What the local executor runs for a node is its .sub expanded with its VARS."""
    src = cfg.data_root / "raw with space"
    make_raw(src, date(2026, 10, 1), 2)
    dag_file = dagmod.write(dagmod.build(W.reduce(cfg, months=1, source=str(src)).make(3), tmp_path / "d"),
                            tmp_path / "d")
    spec = dagmod.read(dag_file)
    cmd = local.node_command(spec.nodes["reduce-001"], spec.dir)
    assert cmd["argv"][:3] == [sys.executable, "-m", "smartcache.tasks.reduce"]
    assert cmd["argv"][-1] == str(src / "year=2026/month=10/day=2/part-00000.avro")
    assert cmd["out"] == spec.dir / "logs" / "reduce-001.out"
    assert cmd["env"]["PYTHONUNBUFFERED"] == "1" and cmd["cpus"] == 1


@pytest.mark.parametrize("args", [["a", "b c", "it's", 'say "hi"', "", "x=$y", "tab\there"], []])
def test_argument_syntax_round_trips(args):
    assert split_args(join_args(args)) == args
    assert split_args(f'"{quote_args(args)}"') == args


def test_months_window_and_chunks(cfg):
    raw = cfg.data_root / "raw"
    make_raw(raw, date(2026, 4, 28), 70)        # Apr 28 .. Jul 6
    parts = W.list_partitions(str(raw))
    may_june = W.select_months(parts, 2, "2026-06")
    assert (may_june[0].day, may_june[-1].day, len(may_june)) == (date(2026, 5, 1), date(2026, 6, 30), 61)
    newest = W.select_months(parts, 1, None)
    assert [p.day.month for p in newest] == [7] * 6
    wf = W.reduce(cfg, months=2, end="2026-06", chunk=7).make(1)
    red = wf.layers[0]
    assert len(red.vars) == 9                   # ceil(61 / 7)
    assert red.vars[0]["partition"] == "2026-05-01..2026-05-07"
    assert red.vars[-1]["partition"] == "2026-06-26..2026-06-30"
    assert len(split_args(f'"{red.vars[0]["sources"]}"')) == 7
    with pytest.raises(NotFound):
        W.select_months(parts, 1, "2025-01")
    with pytest.raises(Invalid):
        W.select_months(parts, 1, "2026-13")
    with pytest.raises(NotFound):
        W.list_partitions(str(cfg.data_root / "nowhere"))


def test_pipeline_chains_every_task(cfg, tmp_path):
    make_raw(cfg.data_root / "raw", date(2026, 10, 1), 4)
    plan = W.pipeline(cfg, months=1, model="m1")
    assert plan.params["features"] == "features/2026-10-01_2026-10-04"
    dag_file = dagmod.write(dagmod.build(plan.make(9), tmp_path / "d"), tmp_path / "d")
    spec = dagmod.read(dag_file)
    assert spec.order()[-5:] == ["features-000", "train-000", "evaluate-000", "score-000", "push-000"]
    assert spec.nodes["train-000"].parents == {"features-000"}
    assert spec.nodes["evaluate-000"].parents == {"train-000"}
    assert spec.nodes["score-000"].parents == {"evaluate-000"}
    assert spec.nodes["push-000"].parents == {"score-000"}
    train = (tmp_path / "d" / "train.sub").read_text()
    assert "--features features/2026-10-01_2026-10-04 --name m1" in train
    assert 'MY.SmartcacheTask = "train"' in train and "request_cpus = 2" in train
    score = (tmp_path / "d" / "score.sub").read_text()
    assert "--features features/2026-10-01_2026-10-04 --model m1" in score and "placements/run-9" in score


def test_single_task_workflow_and_extra_args(cfg, tmp_path):
    wf = W.single(cfg, "evaluate", model="m2", extra=["--days", "7"]).make(4)
    dagmod.write(dagmod.build(wf, tmp_path / "d"), tmp_path / "d")
    args = split_args(re.search(r"^arguments = (.*)$", (tmp_path / "d" / "evaluate.sub").read_text(), re.M).group(1))
    assert args[-6:] == ["--model", "m2", "--out", str(cfg.data_root / "evaluation" / "run-4"), "--days", "7"]
    assert args[args.index("--run-id") + 1] == "4"
    with pytest.raises(Invalid):
        W.single(cfg, "features", model="m")
    with pytest.raises(Invalid, match="feature table"):
        W.single(cfg, "train", model="m")


def test_dot_file_and_transfer_option(tmp_path):
    wf = dagmod.Workflow("t", 1, (
        dagmod.Layer("a", "noop", ("--out", "o", "--name", "$(JOB)"), ({"partition": "1", "inputs": "/x"},
                                                                       {"partition": "2", "inputs": "/y"})),
        dagmod.Layer("b", "noop", ("--out", "o", "--name", "$(JOB)"), ({"partition": "3"},), parents=("a",)),
    ))
    dagmod.write(dagmod.build(wf, tmp_path / "d", transfer_files=True), tmp_path / "d")
    dot = (tmp_path / "d" / dagmod.DOT_FILE).read_text()
    assert dot.startswith("digraph") and '"a-000" -> "b-000";' in dot and '"a-001" -> "b-000";' in dot
    sub = (tmp_path / "d" / "a.sub").read_text()
    assert "should_transfer_files = YES" in sub and "transfer_input_files = $(inputs)" in sub


def test_many_to_many_layers_get_a_join_node_the_local_reader_understands(tmp_path):
    wf = dagmod.Workflow("t", 1, (
        dagmod.Layer("a", "noop", ("--name", "$(JOB)"), ({"partition": "1"}, {"partition": "2"})),
        dagmod.Layer("b", "noop", ("--name", "$(JOB)"), ({"partition": "3"}, {"partition": "4"}), parents=("a",)),
    ))
    spec = dagmod.read(dagmod.write(dagmod.build(wf, tmp_path / "d"), tmp_path / "d"))
    join = [n for n in spec.nodes.values() if n.noop]
    assert len(join) == 1 and join[0].parents == {"a-000", "a-001"} and join[0].children == {"b-000", "b-001"}


def test_bad_workflows_are_refused(tmp_path):
    with pytest.raises(dagmod.DagError):
        dagmod.build(dagmod.Workflow("t", 1, (dagmod.Layer("a-b", "noop", ()),)), tmp_path)
    with pytest.raises(dagmod.DagError):
        dagmod.build(dagmod.Workflow("t", 1, (dagmod.Layer("b", "noop", (), parents=("a",)),)), tmp_path)
    with pytest.raises(dagmod.DagError):
        dagmod.read(tmp_path / "missing.dag")


def test_rescue_files_number_and_read_like_dagman(tmp_path):
    dag_file = tmp_path / dagmod.DAG_FILE
    dag_file.write_text("JOB a-000 a.sub\n")
    assert dagmod.rescued(dag_file) == set()
    r1 = dagmod.write_rescue(dag_file, ["a-000"], ["b-000"], total=3)
    (tmp_path / f"{dagmod.DAG_FILE}.rescue009.old").write_text("DONE zzz\n")
    r2 = dagmod.write_rescue(dag_file, ["a-000", "a-001"])
    assert (r1.name, r2.name) == ("workflow.dag.rescue001", "workflow.dag.rescue002")
    assert dagmod.rescue_files(dag_file) == [r1, r2]
    assert dagmod.rescued(dag_file) == {"a-000", "a-001"}
    text = r1.read_text()
    assert "# Nodes that failed: 1" in text and "#   b-000,<ENDLIST>" in text and "DONE a-000" in text
