"""Eight processes writing runs and datasets at once: nothing lost, nothing duplicated."""

import multiprocessing as mp

from smartcache.catalog import open_store

WRITERS, EACH = 8, 15


def _writer(url: str, k: int) -> list[int]:
    store = open_store(url)
    ids = []
    for i in range(EACH):
        run = store.create_run("reduce", {"writer": k, "i": i})
        ids.append(run.id)
        store.set_nodes(run.id, [{"node": f"n{i}", "status": "done"}])
        # every writer registers the same shared names too: upserts, not duplicates
        store.register_dataset(f"raw/shared-{i}", "raw", f"file:///raw/{i}", n_rows=i)
        store.register_dataset(f"reduced/w{k}-{i}", "reduced", f"file:///red/{k}/{i}",
                               parents=[f"raw/shared-{i}"])
        store.register_model("racer", "tensorflow", {"tflite": f"{k}-{i}".encode()})
    store.close()
    return ids


def test_eight_concurrent_writers(catalog_url):
    open_store(catalog_url, migrate=True).close()
    with mp.get_context("spawn").Pool(WRITERS) as pool:
        results = pool.starmap(_writer, [(catalog_url, k) for k in range(WRITERS)])
    store = open_store(catalog_url)
    run_ids = sorted(i for ids in results for i in ids)
    assert len(run_ids) == len(set(run_ids)) == WRITERS * EACH
    assert sorted(r.id for r in store.list_runs()) == run_ids
    assert {r.params["writer"] for r in store.list_runs()} == set(range(WRITERS))
    assert len(store.list_datasets(kind="raw")) == EACH
    reduced = store.list_datasets(kind="reduced")
    assert len(reduced) == WRITERS * EACH
    assert all(len(d.parents) == 1 for d in reduced)
    versions = [m.version for m in store.list_models("racer")]
    assert versions == list(range(1, WRITERS * EACH + 1))
    store.close()
