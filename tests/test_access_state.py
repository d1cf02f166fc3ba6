"""The service's shared access state: the simulator's features, bounded memory, snapshot and restore."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pyarrow as pa

from smartcache.inference.state import AccessState, Capacity
from smartcache.tasks.features import online as O
from smartcache.tasks.generate.traces import generate_trace
from smartcache.tasks.common.trace import make_trace


def _trace(n_days=0.05, seed=1):
    r = generate_trace("mix", seed=seed, scale=n_days)
    return make_trace(r.ts, r.lfn, r.size, r.site)


def _cols(tr, lo=0, hi=None):
    hi = len(tr) if hi is None else hi
    lfns = tr.lfns.take(pa.array(tr.obj[lo:hi])).to_pylist()
    return [tr.sites[i] for i in tr.site[lo:hi]], lfns, tr.size[lo:hi].tolist(), tr.ts[lo:hi].tolist()


def test_observe_in_any_batches_equals_the_simulators_features(tmp_path):
    tr = _trace()
    want = O.trace_features(tr)
    st = AccessState.open(tmp_path / "s", Capacity(files=1 << 15, datasets=1 << 12, sites=16))
    rng = np.random.default_rng(0)
    got, i = [], 0
    while i < len(tr):
        j = min(len(tr), i + int(rng.integers(1, 300)))
        got.append(st.observe(*_cols(tr, i, j)))
        i = j
    np.testing.assert_array_equal(np.concatenate(got), want)
    s = st.stats()
    assert s["accesses"] == len(tr) and s["sites"] == 3 and s["untracked"] == 0
    st.close()


def _worker(folder, cols):
    st = AccessState.open(folder)
    for k in range(len(cols[0])):
        st.observe(*(c[k:k + 1] for c in cols))
    st.close()


def test_processes_share_one_state(tmp_path):
    """Two processes observing (interleaved, each holding the lock per open) leave every access counted."""
    tr = _trace()
    n = 2000
    AccessState.open(tmp_path / "s", Capacity(files=1 << 15, datasets=1 << 12, sites=16)).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(tmp_path / "s", _cols(tr, k * n, (k + 1) * n))) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    st = AccessState.open(tmp_path / "s")
    assert st.stats()["accesses"] == 2 * n
    st.close()


def test_forget_drops_what_is_older_than_the_longest_window_and_keeps_the_rest(tmp_path):
    st = AccessState.open(tmp_path / "s", Capacity(files=1 << 12, datasets=1 << 8, sites=16))
    t0 = 1.8e9
    st.observe(["S"] * 3, ["/a/old.root", "/a/kept.root", "/b/kept.root"], [1e9] * 3, [t0, t0, t0])
    later = t0 + O.LONGEST_WINDOW_S - 10
    st.observe(["S"], ["/a/kept.root"], [1e9], [later])
    before = st.observe(["S"], ["/a/kept.root"], [1e9], [later + 5])   # features of a file that stays
    assert st.forget(now=t0 + O.LONGEST_WINDOW_S + 1) == 3     # old.root, /b/kept.root and the dataset /b
    assert st.stats()["tracked_files"] == 1
    after = st.observe(["S"], ["/a/kept.root"], [1e9], [later + 10])
    # still known after the rebuild: its read count went on from where it was, its gaps are the recent ones
    assert after[0, ONLINE_INDEX["n_prev"]] > before[0, ONLINE_INDEX["n_prev"]] > 0
    assert after[0, ONLINE_INDEX["gap_1"]] == np.float32(np.log1p(5.0))
    st.close()


ONLINE_INDEX = {n: i for i, n in enumerate(O.ONLINE_FEATURES)}


def test_a_full_table_scores_newcomers_as_unseen_and_counts_them(tmp_path):
    st = AccessState.open(tmp_path / "s", Capacity(files=16, datasets=16, sites=16))
    lfns = [f"/d/{i}.root" for i in range(40)]
    feats = st.observe(["S"] * 40, lfns, [1e9] * 40, [1.8e9 + i for i in range(40)])
    s = st.stats()
    assert s["tracked_files"] <= 16 * 0.9 + 1 and s["untracked"] > 0
    assert (feats[:, ONLINE_INDEX["n_prev"]] == 0).all()
    st.close()


def test_snapshot_restores_the_same_state(tmp_path):
    tr = _trace()
    st = AccessState.open(tmp_path / "live", Capacity(files=1 << 15, datasets=1 << 12, sites=16))
    half = len(tr) // 2
    st.observe(*_cols(tr, 0, half))
    snap = st.snapshot(tmp_path / "snap.npz")
    rest_live = st.observe(*_cols(tr, half))
    st.close()
    restored = AccessState.open(tmp_path / "restored", snapshot=snap)
    np.testing.assert_array_equal(restored.observe(*_cols(tr, half)), rest_live)
    restored.close()
