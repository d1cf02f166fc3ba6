"""submit retrain: the feedback window, the plan and its checks, the DAG it writes, the export node, the gate
against the production version, weights artifacts, HTCondor crontab commands and the local scheduler."""

from __future__ import annotations

import io
import json
from datetime import date, datetime

import numpy as np
import pytest

from smartcache.catalog import load_config, open_store
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.condor import dag as dagmod
from smartcache.condor.submitdesc import split_args
from smartcache.submit import retrain as RT
from smartcache.submit import runs as R
from smartcache.submit import schedule as S

from retrain_support import write_feedback

DAY = 86400.0
T0 = 1_790_035_200.0          # 2026-09-22 00:00 UTC
SITE = "T2_IT_Pisa"


def requests(days: int, per_day: int, site: str = SITE, seed: int = 0):
    rng = np.random.default_rng(seed)
    ts = np.sort(T0 + rng.random(days * per_day) * days * DAY)
    files = rng.integers(0, 300, len(ts))
    lfns = [f"/store/mc/Run3/DS{f % 7}/MINIAODSIM/v1/{f}.root" for f in files]
    return ts, [site] * len(ts), lfns, [2 * 10**9] * len(ts)


@pytest.fixture
def env(home):
    cfg = load_config()
    store = open_store(cfg.catalog_url, migrate=True)
    store.add_site(SITE, 5 * 10**12)
    yield cfg, store
    store.close()


# -- the window and the plan's checks --------------------------------------------------------------
def test_window_is_the_catalogs_last_days_and_holds_out_the_last_fifth(env):
    cfg, store = env
    write_feedback(store, cfg.data_root / "feedback", *requests(10, 250))
    write_feedback(store, cfg.data_root / "feedback", *requests(10, 20, site="T1_US_FNAL"))
    w = RT.plan(cfg, store, RT.RetrainRequest(site=SITE, days=7)).params["window"]
    assert (w["first"], w["last"], w["held_out_from"]) == ("2026-09-25", "2026-10-01", "2026-09-30")
    assert w["sites"] == [SITE] and w["feedback_days"] == 7 and w["requests"] > 1000
    all_sites = RT.plan(cfg, store, RT.RetrainRequest(days=30)).params
    assert all_sites["window"]["sites"] == ["T1_US_FNAL", SITE] and all_sites["sites_without_size"] == ["T1_US_FNAL"]
    assert all_sites["production"] is None and "fresh training only" in all_sites["warm_start"]
    assert all_sites["model"] == "cachenet"                       # the shared model, for sites without their own
    plan = RT.plan(cfg, store, RT.RetrainRequest(days=30))
    _, dag_file = R.create(cfg, store, plan, "local")
    export, train = _argv(dag_file, "export"), _argv(dag_file, "train")
    assert "--all" in export and "--site" not in export + train and "--warm-start" not in train


def test_plan_refuses_before_a_run_exists(env):
    cfg, store = env
    with pytest.raises(NotFound, match="no site named 'T2_XX_Nowhere'"):
        RT.plan(cfg, store, RT.RetrainRequest(site="T2_XX_Nowhere"))
    with pytest.raises(NotFound, match=f"no feedback for site {SITE} in the catalog"):
        RT.plan(cfg, store, RT.RetrainRequest(site=SITE))
    write_feedback(store, cfg.data_root / "feedback", *requests(1, 3000))
    with pytest.raises(Invalid, match="at least 2 days are needed"):
        RT.plan(cfg, store, RT.RetrainRequest(site=SITE))
    store.add_site("T2_IT_Bari", 10**12)
    write_feedback(store, cfg.data_root / "feedback", *requests(3, 100, site="T2_IT_Bari"))
    with pytest.raises(Invalid, match=r"only \d+ requests of feedback .* at least 1000 are needed"):
        RT.plan(cfg, store, RT.RetrainRequest(site="T2_IT_Bari"))
    with pytest.raises(NotFound, match="no feedback for site .* between 2026-01-04 and 2026-01-10"):
        RT.plan(cfg, store, RT.RetrainRequest(site=SITE, days=7, end="2026-01-10"))
    assert store.list_runs() == []


def _argv(dag_file, layer):
    sub = (dag_file.parent / f"{layer}.sub").read_text()
    line = next(ln for ln in sub.splitlines() if ln.startswith("arguments"))
    return split_args(line.split("=", 1)[1].strip())


def test_dag_chains_export_train_evaluate_with_the_held_out_day_and_the_production_version(env):
    cfg, store = env
    write_feedback(store, cfg.data_root / "feedback", *requests(10, 150))
    store.register_model("cachenet", "tensorflow", {"tflite": b"x", "weights": b"y"}, params={"policy": "next-gap"},
                         stage="production")
    plan = RT.plan(cfg, store, RT.RetrainRequest(site=SITE, days=10, epochs=3))
    assert plan.params["production"] == "cachenet:1" and "warm-started from cachenet:1" in plan.params["warm_start"]
    assert "(to answer site T2_IT_Pisa) only if it beats cachenet:1 and the best heuristic" in RT.describe(plan)
    assert plan.params["model"] == "cachenet-T2_IT_Pisa"
    run, dag_file = R.create(cfg, store, plan, "local")
    spec = dagmod.read(dag_file)
    assert spec.order() == ["export-000", "train-000", "evaluate-000"]
    assert spec.nodes["train-000"].parents == {"export-000"} and spec.nodes["evaluate-000"].parents == {"train-000"}
    export, train, evaluate = (_argv(dag_file, layer) for layer in ("export", "train", "evaluate"))
    trace = "trace/feedback/T2_IT_Pisa/2026-09-22_2026-10-01"
    assert export[:2] == ["-m", "smartcache.tasks.feedback"]
    assert export[export.index("--end") + 1] == "2026-10-01" and export[export.index("--name") + 1] == trace
    assert train[:2] == ["-m", "smartcache.tasks.train"]
    assert train[train.index("--trace-dataset") + 1] == trace and train[train.index("--until") + 1] == "2026-09-30"
    assert train[train.index("--warm-start") + 1] == "cachenet:1" and train[train.index("--epochs") + 1] == "3"
    assert train[train.index("--name") + 1] == "cachenet-T2_IT_Pisa" == evaluate[evaluate.index("--model") + 1]
    assert train[train.index("--site") + 1] == SITE
    assert evaluate[evaluate.index("--start") + 1] == "2026-09-30"
    assert evaluate[evaluate.index("--baseline-model") + 1] == "cachenet:1"
    assert evaluate[evaluate.index("--trace") + 1] == f"{cfg.data_root.absolute()}/retrain/run-{run.id}/trace.csv"
    assert evaluate[evaluate.index("--parent") + 1] == trace
    assert json.loads(json.dumps(store.get_run(run.id).params))["window"]["held_out_from"] == "2026-09-30"


def test_the_version_to_beat_is_the_one_the_service_answers_the_site_with(env):
    _, store = env
    def reg(name, site, policy="next-gap"):
        store.register_model(name, "tensorflow", {"tflite": b"x"}, params={"policy": policy, "site": site},
                             stage="production")
    reg("reuse", None, policy="reuse")
    assert RT.serving_model(store, SITE) is None
    reg("cachenet", None)
    reg("cachenet-T2_IT_Pisa", SITE)
    reg("cachenet-T1_US_FNAL", "T1_US_FNAL")
    assert RT.serving_model(store, SITE).ref == "cachenet-T2_IT_Pisa:1"
    assert RT.serving_model(store, "T2_IT_Bari").ref == RT.serving_model(store, None).ref == "cachenet:1"


# -- the export node --------------------------------------------------------------------------------
def test_export_node_writes_the_window_with_the_feedback_days_as_parents(env, tmp_path, capsys):
    from smartcache.tasks.common.trace import read_trace_csv
    from smartcache.tasks.feedback import main
    cfg, store = env
    ts, sites, lfns, sizes = requests(10, 300)
    write_feedback(store, cfg.data_root / "feedback", ts, sites, lfns, sizes)
    rc = main(["--catalog-url", cfg.catalog_url, "--site", SITE, "--days", "5", "--end", "2026-09-30",
               "--out", str(tmp_path / "out"), "--name", "trace/x"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["held_out_from"] == "2026-09-30" and out["parents"] == 5
    ds = store.get_dataset("trace/x")
    assert ds.kind == "trace" and ds.parents == tuple(f"feedback/{SITE}/2026-09-{d}" for d in range(26, 31))
    tr = read_trace_csv(tmp_path / "out" / "trace.csv")
    keep = (ts >= T0 + 4 * DAY) & (ts < T0 + 9 * DAY)
    assert len(tr) == ds.n_rows == int(keep.sum()) and np.allclose(tr.ts, ts[keep])
    assert ds.meta["requests_before_held_out"] == int(((ts >= T0 + 4 * DAY) & (ts < T0 + 8 * DAY)).sum())
    rc = main(["--catalog-url", cfg.catalog_url, "--site", "T1_US_FNAL", "--out", str(tmp_path / "o2")])
    assert rc == 1 and "no feedback for site T1_US_FNAL" in capsys.readouterr().err


# -- the gate against the production version ---------------------------------------------------------
def _rows(**bhr):
    from smartcache.tasks.simulate.core import Metrics, SimResult
    return [SimResult(SITE, p.replace("_", ":"), 10**12, Metrics(100, 50, 10_000, int(v * 10_000), 0), (), 0.0,
                      {"size_label": "site"}) for p, v in bhr.items()]


def test_retrain_verdict_needs_the_production_version_and_the_best_heuristic_beaten():
    from smartcache.tasks.evaluate.versus import retrain_verdict
    new, prod = "model:cachenet", "model:cachenet:1"
    ok, why = retrain_verdict(_rows(lru=0.30, arc=0.33, model_cachenet=0.36, **{"model_cachenet_1": 0.35}), new, prod,
                              "cachenet:1")
    assert ok and why.startswith("beats the production model cachenet:1's byte hit ratio 0.3500 (by +0.0100)")
    assert "ARC's 0.3300 (by +0.0300)" in why
    ok, why = retrain_verdict(_rows(lru=0.30, arc=0.33, model_cachenet=0.34, **{"model_cachenet_1": 0.35}), new, prod,
                              "cachenet:1")
    assert not ok and "does not beat the production model cachenet:1's 0.3500 (short by 0.0100)" in why
    ok, why = retrain_verdict(_rows(lru=0.30, arc=0.37, model_cachenet=0.36, **{"model_cachenet_1": 0.35}), new, prod,
                              "cachenet:1")
    assert not ok and "does not beat ARC's 0.3700" in why and "it does beat the production model" in why
    ok, why = retrain_verdict(_rows(lru=0.30, arc=0.33, model_cachenet=0.36), new, None)
    assert ok and why.endswith("(no production version to beat)")


# -- weights artifacts ------------------------------------------------------------------------------
class _FakeModel:
    def __init__(self, rng):
        self.w = [rng.random((3, 4), dtype=np.float32), rng.random(4, dtype=np.float32)]

    def get_layer(self, name):
        assert name == "normalization"
        return type("Norm", (), {"mean": np.ones((1, 3), np.float32), "variance": np.full((1, 3), 2.0, np.float32)})

    def get_weights(self):
        return self.w


def test_weights_artifact_round_trips_and_refuses_anything_else():
    from smartcache.tasks.train import weights as WT
    m = _FakeModel(np.random.default_rng(0))
    data = WT.to_npz(m, hidden=(4,), feature_set="online-v1", features=["a", "b", "c"])
    back = WT.from_npz(data)
    assert back.hidden == (4,) and back.features == ("a", "b", "c") and back.variance.tolist() == [2.0] * 3
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, m.w))
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)       # a pickled object array
    for junk in (b"not a zip", buf.getvalue()):
        with pytest.raises(Invalid, match="not a weights artifact"):
            WT.from_npz(junk)
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(b'{"format": "other"}', np.uint8))
    with pytest.raises(Invalid, match="unknown weights format"):
        WT.from_npz(buf.getvalue())


# -- schedules --------------------------------------------------------------------------------------
def test_cron_fields_say_the_period_in_step_with_now_and_refuse_what_cron_cannot():
    from smartcache.condor.cron import cron_fields, describe
    at = datetime(2026, 12, 3, 14, 5)                       # a Thursday
    week = cron_fields(7 * DAY, at)
    assert (week["cron_minute"], week["cron_hour"], week["cron_day_of_week"], week["cron_day_of_month"]) == \
        ("5", "14", "4", "*")
    assert describe(week) == "every Thursday at 14:05 (schedd local time)"
    assert cron_fields(DAY, at)["cron_day_of_week"] == "*" and describe(cron_fields(DAY, at)).startswith("every day")
    assert cron_fields(6 * 3600, at)["cron_hour"] == "2-23/6" and cron_fields(3600, at)["cron_hour"] == "*"
    assert cron_fields(15 * 60, at)["cron_minute"] == "5-59/15" and cron_fields(60, at)["cron_minute"] == "*"
    for bad in (5 * DAY, 7 * 3600, 7 * 60, 30):
        with pytest.raises(Invalid, match="crontab cannot"):
            cron_fields(bad, at)
    assert S.parse_every("7d") == 7 * DAY and S.parse_every("90s") == 90
    with pytest.raises(Invalid, match="--every must be a duration"):
        S.parse_every("weekly")


def test_cron_job_is_a_local_universe_job_that_stays_queued(tmp_path):
    from smartcache.condor.cron import cron_fields, cron_job
    fields = cron_fields(7 * DAY, datetime(2026, 12, 3, 14, 5))
    job = cron_job(["-m", "smartcache.submit.retrain", "--catalog-url", "sqlite:///x.db", "--schedule", "7"],
                   fields=fields, initialdir=tmp_path, run_id=7, workflow="retrain-schedule",
                   env={"SMARTCACHE_HOME": "/h"})
    text = str(job)
    for line in ("universe = local", "on_exit_remove = false", "cron_minute = 5", "cron_hour = 14",
                 "cron_day_of_week = 4", "batch_name = smartcache-retrain-schedule-7"):
        assert line in text.splitlines(), text
    assert '"-m smartcache.submit.retrain --catalog-url sqlite:///x.db --schedule 7"' in text
    with pytest.raises(Invalid, match="not crontab submit commands"):
        cron_job([], fields={"deferral_time": "1"}, initialdir=tmp_path, run_id=1, workflow="w", env={})


def test_local_scheduler_runs_on_time_skips_overruns_and_stops_cleanly():
    now = [1000.0]
    slept, lines, started = [], [], []

    def sleep(s):
        if len(slept) == 3:
            raise KeyboardInterrupt
        slept.append(s)
        now[0] += s

    def cycle(k):
        started.append(now[0])
        now[0] += 250 if k == 2 else 10        # the second retrain overruns the period
        return True
    n = S.run_every(100, cycle, clock=lambda: now[0], sleep=sleep, echo=lines.append)
    assert started == [1000, 1100, 1400, 1500] and n == 4
    assert any("2 start(s) skipped" in ln for ln in lines) and lines[-1] == "schedule stopped after 4 retrain(s)"
    assert S.run_every(100, lambda k: k < 2, clock=lambda: now[0], sleep=lambda s: None, echo=lines.append) == 2


def test_cli_says_what_it_needs(cli, env):
    res = cli("submit", "retrain", "--executor", "local")
    assert res.exit_code == 1 and "give --site NAME or --all" in res.output
    res = cli("submit", "retrain", "--site", SITE, "--every", "7d", "--end", "2026-10-01", "--executor", "local")
    assert res.exit_code == 1 and "drop --end" in res.output
    res = cli("submit", "retrain", "--site", SITE, "--executor", "local")
    assert res.exit_code == 1 and "no feedback for site" in res.output and "Traceback" not in res.output


def test_held_out_day_matches_the_trainers_rule():
    from smartcache.tasks.common.trace import make_trace
    from smartcache.tasks.feedback import held_out_day
    from smartcache.tasks.train.trace import held_out_start
    for n in (2, 3, 7, 27):
        days = [date(2026, 1, 1 + i) for i in range(n)]
        tr = make_trace([(d - date(1970, 1, 1)).days * DAY + 5 for d in days], ["/a"] * n, [1] * n, ["S"] * n)
        assert (held_out_day(days) - date(1970, 1, 1)).days * DAY == held_out_start(tr, 0.2)
