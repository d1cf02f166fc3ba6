"""The catalog store, run against SQLite and PostgreSQL (the ``catalog_url`` fixture)."""

import pytest

from smartcache.catalog import AlreadyExists, ErrorCode, Invalid, NotFound, Unavailable, open_store
from smartcache.catalog.store import Store


def test_sites_crud(store):
    s = store.add_site("T2_IT_Pisa", 500 * 10**12, push_uri="file:///tmp/x", region="IT")
    assert (s.name, s.cache_size, s.push_uri, s.region) == ("T2_IT_Pisa", 500 * 10**12, "file:///tmp/x", "IT")
    with pytest.raises(AlreadyExists) as e:
        store.add_site("T2_IT_Pisa", 1)
    assert e.value.code is ErrorCode.ALREADY_EXISTS
    store.add_site("T2_IT_Bari", 10**12)
    assert [x.name for x in store.list_sites()] == ["T2_IT_Bari", "T2_IT_Pisa"]
    assert store.update_site("T2_IT_Bari", cache_size=2 * 10**12).cache_size == 2 * 10**12
    store.remove_site("T2_IT_Bari")
    with pytest.raises(NotFound) as e:
        store.get_site("T2_IT_Bari")
    assert e.value.code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "x" * 200, " lead"])
def test_site_names_are_validated(store, name):
    with pytest.raises(Invalid):
        store.add_site(name, 10)


def test_runs_and_nodes(store):
    r = store.create_run("reduce", {"months": 6}, executor="local", dag_dir="/tmp/d")
    assert (r.workflow, r.status, r.params) == ("reduce", "created", {"months": 6})
    r = store.update_run(r.id, status="running", cluster_id=42)
    assert (r.status, r.cluster_id) == ("running", 42)
    store.set_nodes(r.id, [{"node": "reduce-2026-10-01", "task": "reduce", "status": "running"},
                           {"node": "features", "task": "features"}])
    store.set_nodes(r.id, [{"node": "reduce-2026-10-01", "status": "done", "retries": 1}])
    nodes = {n.node: n for n in store.run_nodes(r.id)}
    assert (nodes["reduce-2026-10-01"].status, nodes["reduce-2026-10-01"].retries) == ("done", 1)
    assert nodes["features"].status == "idle"
    with pytest.raises(Invalid):
        store.update_run(r.id, status="exploded")
    with pytest.raises(Invalid):
        store.update_run(r.id, bogus=1)
    with pytest.raises(NotFound):
        store.get_run(10**6)
    second = store.create_run("train")
    assert [x.id for x in store.list_runs()] == [second.id, r.id]
    assert [x.id for x in store.list_runs(workflow="reduce")] == [r.id]


def test_dataset_upsert_and_lineage(store):
    raw = store.register_dataset("raw/2026-10-01", "raw", "file:///raw/day1.avro", n_rows=100, n_bytes=1000)
    red = store.register_dataset("reduced/2026-10-01", "reduced", "file:///red/1.parquet",
                                 parents=["raw/2026-10-01"], n_rows=10, meta={"dropped": {"production": 5}})
    assert red.parents == ("raw/2026-10-01",)
    assert red.meta == {"dropped": {"production": 5}}
    # a rerun replaces the row: same id, new values, no duplicate
    again = store.register_dataset("reduced/2026-10-01", "reduced", "file:///red/1.parquet",
                                   parents=["raw/2026-10-01"], n_rows=11)
    assert again.id == red.id and again.n_rows == 11
    assert len(store.list_datasets(kind="reduced")) == 1
    assert [d.name for d in store.dataset_children(raw.name)] == ["reduced/2026-10-01"]
    assert [d.name for d in store.list_datasets(prefix="raw/")] == ["raw/2026-10-01"]
    with pytest.raises(NotFound):
        store.register_dataset("features/x", "features", "file:///f", parents=["reduced/nope"])
    assert [d.name for d in store.list_datasets()] == ["raw/2026-10-01", "reduced/2026-10-01"]  # rolled back


def test_prefix_is_literal(store):
    store.register_dataset("a_b/1", "raw", "u")
    store.register_dataset("axb/1", "raw", "u")
    assert [d.name for d in store.list_datasets(prefix="a_b/")] == ["a_b/1"]


def test_quarantine_upsert_and_release(store):
    run = store.create_run("reduce")
    q = store.quarantine("file:///raw/d1.avro", "truncated avro", partial=True, n_bytes=77,
                         records_read=10, records_lost=5, run_id=run.id)
    assert (q.partial, q.records_read, q.records_lost, q.run_id) == (True, 10, 5, run.id)
    q2 = store.quarantine("file:///raw/d1.avro", "empty file", n_bytes=0)
    assert q2.id == q.id and q2.reason == "empty file"
    assert len(store.list_quarantine()) == 1
    assert store.release("file:///raw/d1.avro") is True
    assert store.release("file:///raw/d1.avro") is False
    assert store.list_quarantine() == []


def test_models_versions_artifacts_stages(store):
    store.register_dataset("features/all", "features", "file:///f.parquet")
    m1 = store.register_model("cachenet", "tensorflow", {"tflite": b"\x00tfl", "savedmodel": b"tgz"},
                              input_features=["f1", "f2"], metrics={"auc": 0.81},
                              datasets=[("train", "features/all")])
    m2 = store.register_model("cachenet", "tensorflow", {"tflite": b"v2"})
    assert (m1.version, m2.version) == (1, 2)
    assert m1.datasets == (("train", "features/all"),)
    assert [a.kind for a in m1.artifacts] == ["savedmodel", "tflite"]
    assert store.model_artifact("cachenet", 1, "tflite") == b"\x00tfl"
    with pytest.raises(NotFound):
        store.model_artifact("cachenet", 2, "savedmodel")
    # without a production version, the newest is the default; then production wins
    assert store.get_model("cachenet").version == 2
    store.set_model_stage("cachenet", 1, "production", "beats LRU")
    assert store.get_model("cachenet").version == 1
    store.set_model_stage("cachenet", 2, "production")
    assert store.get_model("cachenet", version=1).stage == "archived"
    assert store.get_model("cachenet", stage="production").version == 2
    assert store.delete_model("cachenet", 1) == 1
    assert [m.version for m in store.list_models()] == [2]
    with pytest.raises(NotFound):
        store.get_model("nope")
    with pytest.raises(Invalid):
        store.register_model("../evil", "tensorflow", {"tflite": b"x"})


def test_corrupt_artifact_is_detected(store):
    from sqlalchemy import update

    from smartcache.catalog.models import ArtifactRow
    store.register_model("m", "tensorflow", {"tflite": b"good"})
    with store.engine.begin() as c:
        c.execute(update(ArtifactRow).values(content=b"evil"))
    with pytest.raises(Invalid, match="checksum"):
        store.model_artifact("m", 1, "tflite")


def test_placements(store):
    store.add_site("T2_US_UCSD", 10**14)
    store.register_model("cachenet", "tensorflow", {"tflite": b"x"})
    p = store.add_placement("T2_US_UCSD", "file:///lists/ucsd.parquet", 1200, 3 * 10**12,
                            model=("cachenet", 1), checksum="sha256:ab")
    assert (p.site, p.model, p.push_status) == ("T2_US_UCSD", "cachenet:1", "pending")
    p = store.set_push_status(p.id, "pushed")
    assert p.push_status == "pushed" and p.pushed is not None
    p2 = store.add_placement("T2_US_UCSD", "file:///lists/ucsd2.parquet", 1, 1)
    assert store.latest_placement("T2_US_UCSD").id == p2.id
    with pytest.raises(NotFound):
        store.add_placement("T2_XX_None", "u", 1, 1)
    with pytest.raises(Invalid):
        store.set_push_status(p.id, "lost")


def test_unmigrated_catalog_says_what_to_do(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(Unavailable, match="smartcache db upgrade"):
        store.list_sites()


def test_open_store_migrates(catalog_url):
    s = open_store(catalog_url, migrate=True)
    assert s.list_sites() == []
    s.close()


def test_reference_to_a_missing_run_is_a_catalog_error(store):
    with pytest.raises(NotFound, match="not in the catalog"):
        store.register_dataset("raw/x", "raw", "file:///x", run_id=999_999)
