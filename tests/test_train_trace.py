"""A model from a plain trace: `smartcache generate trace`, `train --trace`, then the simulator runs it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import numpy as np
import pytest

from smartcache.catalog import open_store
from smartcache.tasks.common.trace import read_trace_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scan_csv(tmp_path_factory):
    from click.testing import CliRunner

    from smartcache.submit.cli import cli
    path = tmp_path_factory.mktemp("trace") / "scan.csv"
    res = CliRunner().invoke(cli, ["generate", "trace", "--family", "scan", "--scale", "0.25", "--out", str(path)])
    assert res.exit_code == 0, res.output
    assert "requests" in res.output and path.is_file()
    return path


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).date().isoformat()


def test_train_on_a_trace_then_simulate_it(cli, home, scan_csv):
    trace = read_trace_csv(scan_csv)
    until = _day(trace.ts[0] + (trace.ts[-1] - trace.ts[0]) * 2 / 3)
    res = cli("train", "--trace", str(scan_csv), "--name", "scanner", "--until", until, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)     # stderr says the catalog was created
    assert out["model"] == "scanner:1" and out["stage"] == "staging" and out["until"] == until
    assert out["val_nll"] < out["val_nll_prior"], "it learned something about next reads"

    store = open_store(f"sqlite:///{home}/catalog.db")
    model = store.get_model("scanner", 1)
    assert model.params["policy"] == "next-gap" and len(model.params["gap_edges"]) == 10
    (role, ds_name), = model.datasets
    ds = store.get_dataset(ds_name)
    assert role == "train" and ds.kind == "trace" and ds.checksum == hashlib.sha256(scan_csv.read_bytes()).hexdigest()
    assert ds.n_rows == len(trace)
    # both serving forms, checksummed in the catalog
    assert store.model_artifact("scanner", 1, "tflite")[4:8] == b"TFL3"
    assert store.model_artifact("scanner", 1, "savedmodel")[:2] == b"\x1f\x8b"

    # the simulator plays the model as a cache policy on the days it never saw (warm from the start)
    from smartcache.tasks.simulate.grid import run_grid
    from smartcache.tasks.simulate.model import load_scorer
    t_from = datetime.fromisoformat(until).replace(tzinfo=timezone.utc).timestamp()
    ws = trace.take(trace.ts >= t_from).working_set()
    results = run_grid(trace, ["lru", "gdsf", "belady", "model:scanner"], [int(ws * 0.05)],
                       scorers={"model:scanner": load_scorer(store, "scanner")}, count_from=t_from)
    bhr = {r.policy: r.overall.byte_hit_ratio for r in results}
    store.close()
    # on dataset scans with re-runs the next-read model beats LRU and GDSF, and Belady bounds it
    assert bhr["model:scanner"] > max(bhr["lru"], bhr["gdsf"]) and bhr["model:scanner"] <= bhr["belady"], bhr


def test_train_user_errors(cli, home, scan_csv, tmp_path):
    res = cli("train", "--trace", str(scan_csv), "--name", "m", "--until", "1999-01-01")
    assert res.exit_code == 1 and "requests before 1999-01-01" in res.output and "Traceback" not in res.output
    res = cli("train", "--trace", str(scan_csv), "--name", "m", "--until", "yesterday")
    assert res.exit_code == 1 and "--until must be a date" in res.output
    res = cli("train", "--trace", str(scan_csv), "--name", "m", "--site", "T2_NO_Where")
    assert res.exit_code == 1 and "not in" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("when,where\n1,2\n")
    res = cli("train", "--trace", str(bad), "--name", "m")
    assert res.exit_code == 1 and "timestamp,site,lfn,size" in res.output


def test_trace_families_are_deterministic_and_distinct():
    from smartcache.tasks.generate.traces import FAMILIES, generate_trace
    for fam in FAMILIES:
        a, b = generate_trace(fam, seed=1, scale=0.05), generate_trace(fam, seed=1, scale=0.05)
        assert np.array_equal(a.ts, b.ts) and a.lfn == b.lfn and np.array_equal(a.size, b.size)
        assert len(a) > 1000 and (np.diff(a.ts) >= 0).all() and (a.size > 0).all()
    assert len(set(generate_trace("mix", seed=1, scale=0.05).site)) == 3
