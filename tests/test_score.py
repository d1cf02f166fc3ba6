"""Bulk scoring: the fast scorer, ranking and the exact cut, list files, catalog rows, idempotent reruns."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from train_support import COLUMNS, GB, SITES, register_features

from smartcache.catalog import open_store
from smartcache.catalog.errors import Invalid
from smartcache.tasks.score.scorer import load_scorer, parse_ref
from smartcache.tasks.score.task import SiteRanking, parse_header, rank_and_cut, score_sites
from smartcache.tasks.features import table as T
from smartcache.tasks.train import data as D
from smartcache.tasks.train.model import FitConfig
from smartcache.tasks.train.task import train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("score")
    store = open_store(f"sqlite:///{tmp}/c.db", migrate=True)
    name = register_features(store, tmp / "features.parquet", n_files=2000, n_days=30, seed=3)
    train(store, name, "cachenet", cfg=FitConfig(seed=3, epochs=4, patience=2), columns=COLUMNS)
    store.add_site(SITES[0], 40 * GB, push_uri=f"file://{tmp}/site0/")
    store.add_site(SITES[1], 25 * GB, push_uri=f"file://{tmp}/site1/")
    yield store, name, tmp
    store.close()


# -- ranking ------------------------------------------------------------------------------------
def _rows(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"lfn": [f"/store/f{i}.root" for i in range(n)],
                     "size": rng.integers(1, 100, n).astype(np.int64),
                     "score": rng.random(n).astype(np.float32)})


def test_rank_and_cut_is_the_longest_fitting_prefix():
    t = _rows(500)
    for cap in (1, 50, 999, 5000, 10**9):
        lst = rank_and_cut(t, cap)
        size = lst.column("size").to_numpy()
        total = int(size.sum())
        assert total <= cap
        order = np.lexsort((t.column("size").to_numpy(), -t.column("score").to_numpy()))
        ranked = t.take(pa.array(order))
        if lst.num_rows < t.num_rows:               # the next ranked file would not fit
            assert total + ranked.column("size")[lst.num_rows].as_py() > cap
        assert lst.column("lfn").to_pylist() == ranked.column("lfn").to_pylist()[: lst.num_rows]
        assert lst.column("rank").to_pylist() == list(range(1, lst.num_rows + 1))
    with pytest.raises(Invalid):
        rank_and_cut(t, 0)


def test_ties_prefer_smaller_files_and_duplicates_keep_their_best():
    t = pa.table({"lfn": ["/b", "/a", "/c", "/a"], "size": [5, 5, 2, 5], "score": [0.5, 0.5, 0.5, 0.9]})
    lst = rank_and_cut(t, 100)
    assert lst.column("lfn").to_pylist() == ["/a", "/c", "/b"]
    assert lst.column("score").to_pylist()[0] == pytest.approx(0.9)


def test_streaming_ranking_equals_one_shot():
    t = _rows(3000, seed=1)
    r = SiteRanking("S", 20000)
    for start in range(0, t.num_rows, 700):
        part = t.slice(start, 700)
        r.add(part.column("lfn").combine_chunks(), part.column("size").to_numpy(), part.column("score").to_numpy())
    assert r.best.equals(rank_and_cut(t, 20000))
    assert r.candidates == 3000


def test_streaming_keeps_the_file_that_ends_the_list():
    # the big file (0.8) ends the list after /a; a later batch's small file (0.1) would fit in the space
    # left, but ranks after the big one: it must stay out, as in the one-shot ranking
    first = pa.table({"lfn": ["/a", "/big"], "size": [60, 50], "score": [0.9, 0.8]})
    later = pa.table({"lfn": ["/small"], "size": [10], "score": [0.1]})
    r = SiteRanking("S", 100)
    for part in (first, later):
        r.add(part.column("lfn"), part.column("size").to_numpy(), part.column("score").to_numpy())
    assert r.best.column("lfn").to_pylist() == ["/a"] == rank_and_cut(pa.concat_tables([first, later]), 100)[
        "lfn"].to_pylist()


# -- the scorer ---------------------------------------------------------------------------------
def test_scorer_batches_give_the_same_answers(world):
    store, name, _ = world
    scorer = load_scorer(store, "cachenet", batch_rows=1000)  # rounded up to 1024
    x = D.load_labelled(store.get_dataset(name).uri, COLUMNS, horizon=7).x[:5000]
    whole = scorer(x)
    assert whole.dtype == np.float32 and whole.shape == (5000,)
    assert ((whole >= 0) & (whole <= 1)).all()
    parts = np.concatenate([scorer(x[i:i + n]) for i, n in ((0, 1), (1, 3), (4, 1500), (1504, 3496))])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-6)
    assert scorer.threshold == store.get_model("cachenet").metrics["threshold"]
    with pytest.raises(Invalid, match="features"):
        scorer(x[:, :3])


def test_model_references():
    assert parse_ref("cachenet") == ("cachenet", None)
    assert parse_ref("cachenet:4") == ("cachenet", 4)
    assert parse_ref("cachenet:4", 2) == ("cachenet", 2)
    with pytest.raises(Invalid):
        parse_ref("cachenet:x")


# -- the task -----------------------------------------------------------------------------------
def test_score_writes_ranked_lists_cut_to_each_cache(world):
    store, name, tmp = world
    out = tmp / "lists"
    lists, stats = score_sites(store, name, "cachenet", out, run_id=None)
    table = pq.read_table(store.get_dataset(name).uri)
    last = pc.max(table.column("day"))
    assert stats["day"] == last.as_py().isoformat() and stats["rows"] > 0
    scorer = load_scorer(store, "cachenet")
    for sl in lists:
        site = store.get_site(sl.site)
        cand = table.filter(pc.and_(pc.equal(table.column("day"), last), pc.equal(table.column("site"), sl.site)))
        assert sl.candidates == cand.num_rows
        # the list is exactly the longest prefix, by score, of all candidates that fits the cache
        scored = pa.table({"lfn": cand.column("lfn"), "size": cand.column("size"),
                           "score": scorer(T.feature_matrix(cand, COLUMNS))})
        expected = rank_and_cut(scored, site.cache_size)
        lst = pq.read_table(out / f"{sl.site}.parquet")
        assert lst.column_names == ["lfn", "size", "score", "rank"]
        assert lst.column("lfn").to_pylist() == expected.column("lfn").to_pylist()
        assert sl.n_bytes == sum(lst.column("size").to_pylist()) <= site.cache_size
        assert sl.n_files < sl.candidates                      # the caches are smaller than the candidates
        scores = lst.column("score").to_numpy()
        assert (np.diff(scores) <= 0).all()

        text = (out / f"{sl.site}.txt").read_text()
        head = parse_header(text)
        assert head["site"] == sl.site and head["model"] == "cachenet:1"
        assert int(head["files"]) == sl.n_files and int(head["bytes"]) == sl.n_bytes
        assert head["created"].endswith("+00:00")
        body = [line for line in text.splitlines() if not line.startswith("#")]
        assert body == lst.column("lfn").to_pylist()

        p = store.latest_placement(sl.site)
        assert p.id == sl.placement.id and p.model == "cachenet:1" and p.push_status == "pending"
        assert p.n_files == sl.n_files and p.n_bytes == sl.n_bytes
        assert p.checksum == hashlib.sha256(text.encode()).hexdigest()
        ds = store.get_dataset(f"placements/{sl.site}/cachenet:1/{stats['day']}")
        assert ds.parents == (name,) and ds.meta["placement_id"] == p.id


def test_rescoring_the_same_day_changes_nothing(world):
    store, name, tmp = world
    out = tmp / "lists2"
    first, _ = score_sites(store, name, "cachenet", out, sites=[SITES[1]])
    before = (out / f"{SITES[1]}.txt").read_bytes()
    n_rows = len(store.list_placements(SITES[1]))
    again, _ = score_sites(store, name, "cachenet", out, sites=[SITES[1]])
    assert not again[0].changed and again[0].placement.id == first[0].placement.id
    assert (out / f"{SITES[1]}.txt").read_bytes() == before
    assert len(store.list_placements(SITES[1])) == n_rows


def test_score_then_push(world):
    store, name, tmp = world
    from smartcache.tasks.push.task import push_sites
    score_sites(store, name, "cachenet", tmp / "lists3", sites=[SITES[0]])
    (r,) = push_sites(store, [SITES[0]])
    assert r.ok and (tmp / "site0" / f"{SITES[0]}.txt").read_bytes() == (tmp / "lists3" / f"{SITES[0]}.txt").read_bytes()
    assert store.latest_placement(SITES[0]).push_status == "pushed"


def test_main_reports_errors_in_one_line(world, capsys):
    store, name, tmp = world
    from smartcache.tasks.score.task import main
    url = str(store.engine.url)
    assert main(["--catalog-url", url, "--features", name, "--model", "nosuch", "--out", str(tmp / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nosuch" in err and err.count("\n") == 1


def test_a_model_with_a_time_discount_ranks_recent_reads_first(world):
    store, name, tmp = world
    from datetime import timedelta

    from smartcache.tasks.score.scorer import Scorer
    rec = store.get_model("cachenet", 1)
    scorer = Scorer(store.model_artifact("cachenet", 1, "tflite"), rec.input_features, ref=rec.ref,
                    params={"decay_days": 2.0})
    out = tmp / "lists-decay"
    lists, stats = score_sites(store, name, "cachenet", out, sites=[SITES[0]], scorer=scorer, lookback_days=4)
    table = pq.read_table(store.get_dataset(name).uri)
    last = pc.max(table.column("day")).as_py()
    # brute force: each file read at the site in the last 4 days, by the row of its last read, p * exp(-age / 2)
    since = pa.scalar(last - timedelta(days=4), pa.date32())
    mine = pc.and_(pc.equal(table.column("site"), SITES[0]), pc.equal(table.column("days_since_last"), 0))
    recent = table.filter(pc.and_(mine, pc.greater(table.column("day"), since)))
    p = scorer(T.feature_matrix(recent, COLUMNS))
    best: dict[str, tuple] = {}
    for lfn, day, size, score in zip(recent["lfn"].to_pylist(), recent["day"].to_pylist(),
                                     recent["size"].to_pylist(), p):
        if lfn not in best or day > best[lfn][0]:
            best[lfn] = (day, size, score * np.float32(np.exp(-(last - day).days / 2.0)))   # float32, as scored
    expected = rank_and_cut(pa.table({"lfn": list(best), "size": [b[1] for b in best.values()],
                                      "score": pa.array([b[2] for b in best.values()], pa.float32())}),
                            store.get_site(SITES[0]).cache_size)
    lst = pq.read_table(out / f"{SITES[0]}.parquet")
    assert lists[0].candidates == len(best) < recent.num_rows       # a file read on several days counts once
    assert lst.column("lfn").to_pylist() == expected.column("lfn").to_pylist()
    assert np.allclose(lst.column("score").to_numpy(), expected.column("score").to_numpy(), rtol=1e-6)
    assert "exp(-age/2d)" in (out / f"{SITES[0]}.txt").read_text().splitlines()[1]
    with pytest.raises(Invalid, match="lookback"):
        score_sites(store, name, "cachenet", out, sites=[SITES[0]], scorer=scorer, lookback_days=0)
