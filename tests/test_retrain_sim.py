"""Simulated continued training (``simulate --retrain-every``): warm start from the current model and the
per-step gate on the window's held-out days, with real (small) Keras models on a small drifting trace."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from smartcache.catalog import open_store
from smartcache.tasks.common.trace import DAY

EPOCHS = 2


@pytest.fixture(scope="module")
def drift(tmp_path_factory):
    """18 days of the drifting scan family, a model trained on its first 8 days (its weights kept)."""
    from smartcache.tasks.common.trace import make_trace, write_trace_csv
    from smartcache.tasks.generate.traces import generate_trace
    from smartcache.tasks.train.nextgap import NextGapConfig
    from smartcache.tasks.train.trace import register_trace_file, train_on_trace
    tmp = tmp_path_factory.mktemp("retrain-sim")
    url = f"sqlite:///{tmp}/catalog.db"
    store = open_store(url, migrate=True)
    req = generate_trace("drift", seed=2, scale=0.2)
    trace = make_trace(req.ts, req.lfn, req.size, req.site)
    path = write_trace_csv(trace, tmp / "drift.csv")
    first = float(trace.ts[0] // DAY * DAY)
    model = train_on_trace(store, trace, "drift", register_trace_file(store, path, trace), until=first + 8 * DAY,
                           cfg=NextGapConfig(epochs=EPOCHS))
    yield store, trace, model, first, path
    store.close()


def _scorer(store, model, plan, **cfg):
    from smartcache.tasks.features.online import ONLINE_FEATURES
    from smartcache.tasks.score.scorer import load_scorer
    from smartcache.tasks.train.continued import warm_source
    from smartcache.tasks.train.nextgap import NextGapConfig
    from smartcache.tasks.train.retrain import RetrainingScorer
    from smartcache.tasks.train.trace import FEATURE_SET
    base = load_scorer(store, model.ref)
    warm = warm_source(store, model.ref, ONLINE_FEATURES, FEATURE_SET)
    assert warm.weights is not None, warm.reason
    return base, RetrainingScorer(base, plan, warm=warm, cfg=NextGapConfig(epochs=EPOCHS, **cfg))


def _sizes(trace, start):
    ws = trace.take(trace.ts >= start).working_set()
    return (int(ws * 0.02), int(ws * 0.1))


def test_each_step_trains_before_the_held_out_days_and_the_gate_decides_by_their_byte_hit_ratio(drift):
    from smartcache.tasks.features.online import trace_features
    from smartcache.tasks.simulate.core import simulate
    from smartcache.tasks.simulate.model import NextGapScores
    from smartcache.tasks.train.retrain import RetrainPlan, describe_steps
    store, trace, model, first, _ = drift
    start = first + 10 * DAY
    plan = RetrainPlan(4 * DAY, start, window=8 * DAY, sizes=_sizes(trace, start))    # init "best", gate "bhr"
    base, sc = _scorer(store, model, plan)
    probs = sc(trace)
    frozen = base.predict_all(trace_features(trace))
    before = trace.ts < start
    assert np.array_equal(probs[before], frozen[before])           # nothing changes before the first step
    assert [s["at"] for s in sc.steps] == ["2026-01-11", "2026-01-15"] and len(sc.steps) == 2
    for s in sc.steps:
        # the DAG's hold-out: 8 days in the window -> the last 2 (20 %, rounded up) are held out
        at = np.datetime64(s["at"]).astype("datetime64[s]").astype(float)
        assert s["held_out_from"] == str(np.datetime64(int(at - 2 * DAY), "s").astype("datetime64[D]"))
        held = float(np.datetime64(s["held_out_from"]).astype("datetime64[s]").astype(float))
        assert s["rows"] == int(((trace.ts >= at - 8 * DAY) & (trace.ts < held)).sum())
        g = s["gate"]
        assert s["decision"] == ("replaced" if g["bhr_candidate"] > g["bhr_current"] else "kept")
        assert "held-out byte hit ratio" in s["why"] and "warm from drift:1" in s["start"]
        assert set(g["by_size"]) == {str(x) for x in plan.sizes}
    # the gate's figure for the current model is the simulator's own: the window replayed warm, counted
    # from the held-out day, through the learned kernel (step 1's current model is the frozen one)
    s = sc.steps[0]
    at = start
    held = float(np.datetime64(s["held_out_from"]).astype("datetime64[s]").astype(float))
    rows = (trace.ts >= at - 8 * DAY) & (trace.ts < at)
    sub = trace.take(rows)
    for size, (current, _) in s["gate"]["by_size"].items():
        r = simulate(sub, "model", int(size), scores=NextGapScores(frozen[rows], base.gap_edges), count_from=held)
        assert current == round(r.overall.byte_hit_ratio, 5)
    # what the model answering after the last step is: the last replacing step's, else the frozen one
    replaced = [s for s in sc.steps if s["decision"] == "replaced"]
    assert sc.steps[-1]["model"] == (f"drift:1+r{replaced[-1]['step']}" if replaced else "drift:1")
    lines = describe_steps("model:drift+retrain4d", sc.steps)
    assert lines[0] == f"model:drift+retrain4d: {len(replaced)} of 2 step(s) replaced the model"
    assert all(("replaced" in ln or "kept" in ln) and " rows, " in ln for ln in lines[1:])


def test_the_gate_keeps_the_current_model_unless_the_candidate_caches_better(drift):
    from smartcache.tasks.simulate import hindsight as H
    from smartcache.tasks.train.retrain import RetrainPlan
    store, trace, model, first, _ = drift
    start = first + 10 * DAY
    base, sc = _scorer(store, model, RetrainPlan(4 * DAY, start, window=8 * DAY, sizes=_sizes(trace, start)))
    from smartcache.tasks.features.online import trace_features
    current = base.predict_all(trace_features(trace))
    past = np.flatnonzero((trace.ts >= start - 8 * DAY) & (trace.ts < start))
    held = start - 2 * DAY
    gap = H.next_gap(trace)
    # a candidate that knows the future (each request's true next-gap class) caches better: it replaces
    oracle = H.gap_buckets(gap, np.full(len(trace), np.inf))
    ok, why, fig = sc._judge(trace, past, held, start, gap, current[past], oracle[past])
    assert ok and fig["bhr_candidate"] > fig["bhr_current"] and why.startswith("held-out byte hit ratio")
    # the other way round (the oracle answers now, the model is the candidate) it is kept; a tie keeps too
    ok, _, fig = sc._judge(trace, past, held, start, gap, oracle[past], current[past])
    assert not ok and fig["bhr_candidate"] < fig["bhr_current"]
    assert not sc._judge(trace, past, held, start, gap, current[past], current[past])[0]
    # the NLL gate, labels censored at the present: the oracle wins there too, a tie keeps
    nll = dataclasses.replace(sc.plan, gate="nll")
    sc.plan = nll
    ok, why, fig = sc._judge(trace, past, held, start, gap, current[past], oracle[past])
    assert ok and fig["nll_candidate"] < fig["nll_current"] and "NLL" in why
    assert not sc._judge(trace, past, held, start, gap, current[past], current[past])[0]


def test_warm_start_begins_from_the_current_model_and_fresh_does_not(drift):
    """With a zero learning rate, a warm-started refit is the model it started from (step after step), a fresh
    one is an untrained network: the weights really come from the current model."""
    from smartcache.tasks.features.online import trace_features
    from smartcache.tasks.train.retrain import RetrainPlan
    store, trace, model, first, _ = drift
    start = first + 10 * DAY
    plan = RetrainPlan(4 * DAY, start, window=8 * DAY, init="warm", gate="none")
    base, warm = _scorer(store, model, plan, learning_rate=0.0)
    frozen = base.predict_all(trace_features(trace))
    probs = warm(trace)
    assert [s["model"] for s in warm.steps] == ["drift:1+r1", "drift:1+r2"]
    assert [s["start"] for s in warm.steps] == ["warm from drift:1", "warm from drift:1+r1"]
    assert all(s["decision"] == "replaced" and s["why"] == "no gate: every refit replaces" for s in warm.steps)
    assert float(np.max(np.abs(probs - frozen))) < 1e-4        # Keras vs its TFLite export
    _, fresh = _scorer(store, model, dataclasses.replace(plan, init="fresh"), learning_rate=0.0)
    after = trace.ts >= start
    assert float(np.max(np.abs(fresh(trace)[after] - frozen[after]))) > 1e-2
    # no gate: the whole window is trained on (the earlier behaviour), labels censored at the step
    assert fresh.steps[0]["rows"] == int(((trace.ts >= start - 8 * DAY) & (trace.ts < start)).sum())


def test_plan_errors_are_clear():
    from smartcache.catalog.errors import Invalid
    from smartcache.tasks.train.retrain import RetrainPlan
    with pytest.raises(Invalid, match="needs the cache sizes"):
        RetrainPlan(DAY, 0.0)
    with pytest.raises(Invalid, match="gate must be one of"):
        RetrainPlan(DAY, 0.0, gate="auc")
    with pytest.raises(Invalid, match="start must be one of"):
        RetrainPlan(DAY, 0.0, init="cold", gate="nll")


def test_simulate_cli_prints_and_returns_each_step(drift, cli, home):
    store, trace, model, first, path = drift
    res = cli("train", "--trace", str(path), "--until", "2026-01-09", "--name", "m", "--epochs", str(EPOCHS))
    assert res.exit_code == 0, res.output
    sizes = ",".join(str(s) for s in _sizes(trace, first + 10 * DAY))
    args = ("simulate", "--trace", str(path), "--from", "2026-01-11", "--cache-size", sizes, "--policy", "lru,model:m",
            "--retrain-every", "4d", "--retrain-window", "8d")
    res = cli(*args, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{"):])
    steps = data["retraining"]["model:m+retrain4d"]
    assert [s["at"] for s in steps] == ["2026-01-11", "2026-01-15"]
    assert all(s["decision"] in ("replaced", "kept") and "gate" in s for s in steps)
    assert {r["policy"] for r in data["results"]} == {"lru", "model:m", "model:m+retrain4d"}
    res = cli(*args, "--retrain-gate", "none", "--retrain-start", "fresh")
    assert res.exit_code == 0, res.output
    assert "model:m+retrain4d: 2 of 2 step(s) replaced the model" in res.output
    assert "no gate: every refit replaces; fresh only" in res.output
