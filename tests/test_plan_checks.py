"""What a workflow needs from the catalog is checked when it is planned, before a run row exists: a pipeline
with no sites fails at once, not at its score node after months of reduce and a training."""

from __future__ import annotations

import json

import pytest

from smartcache.catalog import Invalid, NotFound, load_config, open_store
from smartcache.submit import workflows as W


@pytest.fixture
def raw(cli, tmp_path):
    out = tmp_path / "raw"
    r = cli("generate", "logs", "--months", "1", "--end", "2026-01", "--scale", "0.01", "--out", str(out),
            "--no-progress")
    assert r.exit_code == 0, r.output
    return out


def _no_run_was_made(cli) -> None:
    assert json.loads(cli("runs", "--json").stdout) == []
    assert not load_config().runs_dir.exists() or not any(load_config().runs_dir.iterdir())


def test_pipeline_without_sites_fails_before_any_run(cli, raw):
    r = cli("submit", "pipeline", "--months", "1", "--source", str(raw), "--executor", "local", "--wait")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1].startswith("Error: no sites in the catalog (the score node needs them)")
    _no_run_was_made(cli)


def test_pipeline_with_a_site_that_has_no_push_destination_fails_before_any_run(cli, raw, tmp_path):
    assert cli("sites", "add", "T2_XX_Pushed", "--cache-size", "1TB", "--push", f"file://{tmp_path}/p/").exit_code == 0
    assert cli("sites", "add", "T2_XX_Nowhere", "--cache-size", "1TB").exit_code == 0
    r = cli("submit", "pipeline", "--months", "1", "--source", str(raw), "--executor", "local")
    assert r.exit_code == 1
    assert "site(s) without a push destination: T2_XX_Nowhere; the push node would fail" in r.stderr
    _no_run_was_made(cli)
    # with every site pushable the plan is made (the DAG trains the model itself: no model is needed yet)
    cli("sites", "set", "T2_XX_Nowhere", "--push", f"file://{tmp_path}/q/")
    store = open_store(load_config().catalog_url)
    try:
        plan = W.pipeline(load_config(), months=1, source=str(raw), store=store)
    finally:
        store.close()
    assert [layer.name for layer in plan.make(1).layers][-3:] == ["evaluate", "score", "push"]


@pytest.mark.parametrize("args, message", [
    (["score", "--features", "features/none"], "no dataset named 'features/none'"),
    (["evaluate", "--model", "ghost"], "no model ghost in the catalog"),
    (["push"], "no placement lists to push"),
])
def test_single_node_workflows_check_their_inputs(cli, args, message):
    r = cli("submit", *args, "--executor", "local")
    assert r.exit_code == 1 and message in r.stderr and "Traceback" not in r.output
    _no_run_was_made(cli)


def test_score_needs_the_model_and_sites(home):
    cfg = load_config()
    store = open_store(cfg.catalog_url, migrate=True)
    try:
        store.register_dataset("features/x", "features", "file:///nowhere/features")
        with pytest.raises(NotFound, match="no model cachenet"):
            W.single(cfg, "score", model="cachenet", features="features/x", store=store)
        store.register_model("cachenet", "tensorflow", {"tflite": b"bytes"})
        with pytest.raises(NotFound, match="no sites in the catalog"):
            W.single(cfg, "score", model="cachenet", features="features/x", store=store)
        with pytest.raises(NotFound, match="cachenet"):
            W.single(cfg, "score", model="cachenet:7", features="features/x", store=store)
        with pytest.raises(NotFound, match="T1_XX_Gone"):
            W.single(cfg, "score", model="cachenet", features="features/x", extra=["--site", "T1_XX_Gone"],
                     store=store)
        store.add_site("T2_XX_A", 10**12)
        plan = W.single(cfg, "score", model="cachenet:1", features="features/x", store=store)
        assert plan.workflow == "score"
        with pytest.raises(Invalid, match="without a push destination"):
            W.need_sites(store, (), push=True)
    finally:
        store.close()
