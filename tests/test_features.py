"""The FEATURES task: values against a brute-force reference, no look-ahead, trace parity, catalog."""

from __future__ import annotations

import datetime as dt
import functools
import math
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rawlogs import DATASETS, lfn, make_records, write

from smartcache.catalog import open_store
from smartcache.tasks.common.cms import TIERS
from smartcache.tasks.features import task as feat
from smartcache.tasks.features.daily import GAP_CAP
from smartcache.tasks.features.task import (
    FEATURE_COLUMNS,
    LABEL_COLUMNS,
    build_features,
    compute_features,
    request_features,
    trace_feature_matrix,
    trace_features,
)
from smartcache.tasks.reduce.task import reduce_partitions

D0 = dt.date(2026, 1, 1)
SITES = ["T1_IT_CNAF", "T2_US_UCSD", "T2_IT_Pisa"]


def random_events(seed: int = 0, days: int = 60, files: int = 12) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for d in range(days):
        for site in SITES:
            for _ in range(rng.randrange(0, 8)):
                ds, f = rng.randrange(len(DATASETS)), rng.randrange(files)
                rows.append({"day": D0 + dt.timedelta(days=d), "site": site, "lfn": lfn(ds, f),
                             "size": 2_000_000_000 + ds * 10 + f, "n_access": rng.randrange(1, 5),
                             "n_users": rng.randrange(1, 3), "n_tasks": 1, "cpu_s": 10.0})
    return rows


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("day", pa.date32()), ("site", pa.string()), ("lfn", pa.string()), ("size", pa.int64()),
        ("n_access", pa.int64()), ("n_users", pa.int64()), ("n_tasks", pa.int64()), ("cpu_s", pa.float64())]))


@functools.lru_cache(maxsize=None)
def _ds(name: str) -> str:
    """/store/<kind>/<a>/<primary>/<TIER>/<ver>/... -> /<primary>/<a>-<ver>/<TIER> (the CMS dataset)."""
    _, _, _, a, primary, tier, ver = name.split("/")[:7]
    return f"/{primary}/{a}-{ver}/{tier}"


def brute_force(rows: list[dict], horizon: int, present: set[dt.date], candidate_days: int = 1) -> dict:
    """Every feature of every candidate row, one loop at a time."""
    acc: dict = {}
    for r in rows:
        k = (r["site"], r["lfn"], r["day"])
        a = acc.setdefault(k, {"n": 0, "users": 0, "size": 0})
        a["n"] += r["n_access"]
        a["users"] += r["n_users"]
        a["size"] = max(a["size"], r["size"])
    first_day, last_day = min(present), max(present)
    out = {}
    cands = {(s, f, d + dt.timedelta(days=c)) for (s, f, d) in acc for c in range(candidate_days)
             if d + dt.timedelta(days=c) <= last_day}
    for site, name, d in cands:
        mine = {day: a for (s, f, day), a in acc.items() if s == site and f == name}
        ds = _ds(name)
        same_ds = {(f, day): a for (s, f, day), a in acc.items() if s == site and _ds(f) == ds}

        def win(w, items, val):
            return sum(val(a) for day, a in items if d - dt.timedelta(days=w) < day <= d)
        before = [day for day in mine if day < d]
        upto = [day for day in mine if day <= d]
        ds_days = {day for (f, day) in same_ds}
        horizon_days = [d + dt.timedelta(days=i) for i in range(1, horizon + 1)]
        hist_days = [d - dt.timedelta(days=i) for i in range(30)]
        last = max(upto)
        tier = name.split("/")[5]
        row = {
            "file_acc_1d": win(1, mine.items(), lambda a: a["n"]),
            "file_acc_7d": win(7, mine.items(), lambda a: a["n"]),
            "file_acc_30d": win(30, mine.items(), lambda a: a["n"]),
            "file_days_7d": win(7, mine.items(), lambda a: 1), "file_days_30d": win(30, mine.items(), lambda a: 1),
            "ds_acc_1d": win(1, [(day, a) for (f, day), a in same_ds.items()], lambda a: a["n"]),
            "ds_acc_7d": win(7, [(day, a) for (f, day), a in same_ds.items()], lambda a: a["n"]),
            "ds_acc_30d": win(30, [(day, a) for (f, day), a in same_ds.items()], lambda a: a["n"]),
            "ds_files_1d": sum(1 for (f, day) in same_ds if day == d),
            "ds_days_30d": sum(1 for day in ds_days if d - dt.timedelta(days=30) < day <= d),
            "days_since_prev": min((d - max(before)).days, GAP_CAP) if before else GAP_CAP,
            "days_since_first": (d - min(upto)).days,
            "ds_age": (d - min(day for (s, f, day) in acc if _ds(f) == ds)).days,
            "log_size": math.log10(mine[last]["size"]),
            "tier_code": TIERS.index(tier) + 1, "site_tier": int(site[1]),
            "days_since_last": (d - last).days,
            "users_7d": win(7, mine.items(), lambda a: a["users"]),
            "future_reads": sum(a["n"] for day, a in mine.items() if d < day <= d + dt.timedelta(days=horizon)),
            "label_complete": all(x in present for x in horizon_days) and horizon_days[-1] <= last_day,
            "history_complete": all(x in present for x in hist_days) and hist_days[-1] >= first_day,
        }
        row["label"] = int(row["future_reads"] > 0)
        out[(d, site, name)] = row
    return out


@pytest.mark.parametrize("candidate_days", [1, 3])
def test_features_match_brute_force(candidate_days):
    rows = random_events(1, days=45)
    gap = D0 + dt.timedelta(days=20)
    rows = [r for r in rows if r["day"] != gap]                       # a day without data
    present = {D0 + dt.timedelta(days=i) for i in range(45)} - {gap}
    got = compute_features(_table(rows), horizon=5, candidate_days=candidate_days, days_present=present)
    want = brute_force(rows, 5, present, candidate_days)
    assert got.num_rows == len(want)
    for r in got.to_pylist():
        w = want[(r["day"], r["site"], r["lfn"])]
        for col, v in w.items():
            assert r[col] == pytest.approx(v, rel=1e-6), (r["day"], r["site"], r["lfn"], col)
    days = got["day"].to_pylist()
    assert days == sorted(days)


def _frozen(table: pa.Table, upto: dt.date) -> list[dict]:
    rows = table.filter(pa.compute.less_equal(table["day"], pa.scalar(upto, pa.date32()))).to_pylist()
    return [{k: v for k, v in r.items() if k not in LABEL_COLUMNS} for r in rows]


def test_no_feature_looks_ahead():
    rows = random_events(2, days=60)
    cut = D0 + dt.timedelta(days=40)
    base = compute_features(_table(rows), horizon=7)
    rng = random.Random(7)
    changed = [dict(r, n_access=r["n_access"] + 3) if r["day"] > cut and rng.random() < 0.5 else r
               for r in rows if r["day"] <= cut or rng.random() < 0.7]
    changed += [{"day": cut + dt.timedelta(days=k), "site": site, "lfn": lfn(0, 1000 + k), "size": 10 ** 9,
                 "n_access": 2, "n_users": 1, "n_tasks": 1, "cpu_s": 1.0}
                for k in range(1, 30) for site in ("T0_AA_Early", "T2_IT_Pisa")]        # new files, a new site
    three = dt.timedelta(days=3)
    changed += [dict(r, day=r["day"] + three) for r in rows if cut - three < r["day"] <= cut]   # repeats later
    after = compute_features(_table(changed), horizon=7)
    assert _frozen(after, cut) == _frozen(base, cut)

    def labels(t: pa.Table) -> list:
        return t.filter(pa.compute.less_equal(t["day"], pa.scalar(cut, pa.date32())))["future_reads"].to_pylist()
    assert labels(after) != labels(base)                                # ... while labels do look ahead


def _trace(seed: int = 3, n: int = 3000, days: int = 20) -> pa.Table:
    rng = random.Random(seed)
    t0 = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc).timestamp()
    ts = sorted(t0 + rng.random() * days * 86400 for _ in range(n))
    return pa.table({"timestamp": pa.array(ts, pa.float64()),
                     "site": [rng.choice(SITES) for _ in ts],
                     "lfn": [lfn(rng.randrange(3), rng.randrange(25)) for _ in ts],
                     "size": pa.array([3 * 10 ** 9] * n, pa.int64())})


def test_request_features_are_causal_and_end_at_the_daily_row():
    trace = _trace()
    full = request_features(trace)
    for cut in (1000, 1001, 2500):                                      # anywhere, also mid-day
        assert request_features(trace.slice(0, cut)).equals(full.slice(0, cut))
    daily = trace_features(trace, horizon=3)
    by_key = {(r["day"], r["site"], r["lfn"]): r for r in daily.to_pylist()}
    req = full.to_pylist()
    last_of_day = {}
    for i, (ts, site, name) in enumerate(zip(trace["timestamp"].to_pylist(), trace["site"].to_pylist(),
                                             trace["lfn"].to_pylist())):
        last_of_day[(dt.date(1970, 1, 1) + dt.timedelta(days=int(ts // 86400)), site, name)] = i
    file_cols = [c for c in FEATURE_COLUMNS if not c.startswith("ds_") or c == "ds_age"] + ["ds_days_30d"]
    for key, i in last_of_day.items():
        for c in file_cols:
            assert req[i][c] == pytest.approx(by_key[key][c]), (key, c)
    m = trace_feature_matrix(trace, FEATURE_COLUMNS[::-1])
    assert m.dtype == np.float32 and m.shape == (trace.num_rows, len(FEATURE_COLUMNS))
    assert np.array_equal(m[:, 0], full[FEATURE_COLUMNS[-1]].to_numpy())


def test_reduced_and_trace_paths_agree(tmp_path):
    days = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(5)]
    recs = {d: make_records(d, 400, seed=i) for i, d in enumerate(days)}
    srcs = [str(write(tmp_path / "raw", d, r)) for d, r in recs.items()]
    reduce_partitions(srcs, tmp_path / "out", None, None)
    res = build_features(str(tmp_path / "out" / "reduced"), tmp_path / "out", None, horizon=2)
    from_reduced = pq.read_table(res.path)
    kept = [r for rs in recs.values() for r in rs if r["Type"] == "analysis" and r["SuccessFlag"] == 1
            and r["FileSize"]]
    trace = pa.table({"timestamp": pa.array([r["StartedRunningTimeStamp"] for r in kept], pa.int64()),
                      "site": [r["SiteName"] for r in kept], "lfn": [r["FileName"] for r in kept],
                      "size": pa.array([r["FileSize"] for r in kept], pa.int64())})
    from_trace = trace_features(trace, horizon=2)
    cols = ["day", "site", "lfn", *FEATURE_COLUMNS, "label", "future_reads", "label_complete", "site_code"]
    assert from_trace.select(cols).equals(from_reduced.select(cols))
    assert from_reduced["users_7d"].null_count == 0 and from_trace["users_7d"].null_count == from_trace.num_rows


def test_build_registers_lineage_and_marks_missing_days(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/c.db", migrate=True)
    days = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(6)]
    srcs = [str(write(tmp_path / "raw", d, make_records(d, 300, seed=i))) for i, d in enumerate(days) if i != 3]
    reduce_partitions(srcs, tmp_path / "out", store, None)
    run = store.create_run("features")
    rc = feat.main(["--reduced", "reduced", "--out", str(tmp_path / "out"), "--catalog-url",
                    f"sqlite:///{tmp_path}/c.db", "--horizon", "2", "--run-id", str(run.id)])
    assert rc == 0
    (ds,) = store.list_datasets(kind="features")
    assert ds.name == "features/2026-03-01_2026-03-06_h2" and ds.run_id == run.id
    assert ds.parents == tuple(f"reduced/{d}" for i, d in enumerate(days) if i != 3)
    assert ds.meta["missing_days"] == ["2026-03-04"] and ds.meta["feature_columns"] == FEATURE_COLUMNS
    table = pq.read_table(feat.uri_path(ds.uri))
    assert feat.read_meta(feat.uri_path(ds.uri))["horizon"] == 2 and table.num_rows == ds.n_rows
    complete = {r["day"]: r["label_complete"] for r in table.select(["day", "label_complete"]).to_pylist()}
    assert complete == {days[0]: True, days[1]: False, days[2]: False, days[4]: False, days[5]: False}
    with pytest.raises(feat.FeaturesError):
        build_features("reduced-XX", tmp_path / "out", store)
    assert feat.main(["--reduced", str(tmp_path / "nowhere"), "--no-catalog", "--out", str(tmp_path)]) == 1


# -- request-level training rows ---------------------------------------------------------------
def test_request_rows_have_request_features_and_forward_labels():
    from smartcache.tasks.features.request_table import request_table
    trace = _trace(seed=5, n=1500, days=12)
    horizon = 2
    got = request_table(trace, horizon)
    assert got.num_rows == trace.num_rows
    assert got.select(FEATURE_COLUMNS).equals(request_features(trace).select(FEATURE_COLUMNS))
    ts, site, name = (trace[c].to_pylist() for c in ("timestamp", "site", "lfn"))
    first_day, last_day = int(ts[0] // 86400), int(ts[-1] // 86400)
    rows = got.to_pylist()
    for i in range(0, len(ts), 7):                         # brute force on a sample of rows
        later = sum(1 for j in range(i + 1, len(ts))
                    if site[j] == site[i] and name[j] == name[i] and ts[j] <= ts[i] + horizon * 86400)
        day = int(ts[i] // 86400)
        assert rows[i]["future_reads"] == later and rows[i]["label"] == int(later > 0)
        assert rows[i]["label_complete"] == (day + horizon <= last_day)
        assert rows[i]["history_complete"] == (day - 29 >= first_day)
        assert rows[i]["day"] == dt.date(1970, 1, 1) + dt.timedelta(days=day)
        assert rows[i]["timestamp"] == pytest.approx(ts[i], abs=1e-3)          # ms resolution


def test_request_rows_never_look_ahead_and_missing_days_cut_labels():
    from smartcache.tasks.features.request_table import request_table
    trace = _trace(seed=6, n=2000, days=15)
    cut = 1200
    base = request_table(trace, 3)
    rng = random.Random(1)
    later = trace.slice(cut).to_pylist()
    moved = [dict(r, lfn=lfn(rng.randrange(3), rng.randrange(25))) for r in later]   # other files afterwards
    after = request_table(pa.concat_tables([trace.slice(0, cut), pa.Table.from_pylist(moved, trace.schema)]), 3)
    inputs = ["day", "timestamp", "site", "size", *FEATURE_COLUMNS, "history_complete"]
    assert after.slice(0, cut).select(inputs).equals(base.slice(0, cut).select(inputs))
    assert after.slice(0, cut)["future_reads"] != base.slice(0, cut)["future_reads"]
    # a day without data inside the horizon leaves the row unlabelled; an empty day that was there does not
    days = sorted(set(base["day"].to_pylist()))
    gap = days[5]
    holed = trace.filter(pa.array([d != gap for d in base["day"].to_pylist()]))
    before_gap = [gap - dt.timedelta(days=3) <= d < gap for d in request_table(holed, 3)["day"].to_pylist()]
    assert any(before_gap)
    assert not any(c for c, b in zip(request_table(holed, 3)["label_complete"].to_pylist(), before_gap) if b)
    present = request_table(holed, 3, days_present=days)["label_complete"].to_pylist()
    assert all(c for c, b in zip(present, before_gap) if b)


def test_build_writes_the_request_table_beside_the_daily_one(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/c.db", migrate=True)
    days = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(4)]
    srcs = [str(write(tmp_path / "raw", d, make_records(d, 300, seed=i))) for i, d in enumerate(days)]
    reduce_partitions(srcs, tmp_path / "out", store, None)
    res = build_features("reduced", tmp_path / "out", store, horizon=1)
    assert res.meta["requests"] == f"{res.dataset}.requests"
    req = store.get_dataset(res.meta["requests"])
    assert req.kind == feat.REQUESTS_KIND and req.meta["granularity"] == "request" and req.meta["horizon"] == 1
    assert req.parents == store.get_dataset(res.dataset).parents
    table = pq.read_table(feat.uri_path(req.uri))
    daily = pq.read_table(res.path)
    # every read is one row; the reads of a (day, site, file) add up to the daily n_access
    reduced = pa.concat_tables([pq.read_table(feat.uri_path(d.uri), columns=["n_access"])
                                for d in store.list_datasets(kind="reduced")])
    assert table.num_rows == req.n_rows == pa.compute.sum(reduced["n_access"]).as_py()
    assert set(table.column_names) >= {"day", "timestamp", "label", "future_reads", "label_complete", *FEATURE_COLUMNS}
    assert daily.num_rows == res.n_rows and [d.name for d in store.list_datasets(kind="features")] == [res.dataset]
    none = build_features(str(tmp_path / "out" / "reduced"), tmp_path / "out2", None, horizon=1, requests=False)
    assert "requests" not in none.meta


def test_feature_defaults_describe_a_first_read():
    assert set(feat.FEATURE_DEFAULTS) == set(FEATURE_COLUMNS)
    t0 = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc).timestamp()
    one = pa.table({"timestamp": [t0], "site": ["T2_IT_Pisa"], "lfn": ["/store/x/y/z.root"],
                    "size": pa.array([10**9], pa.int64())})
    row = request_features(one).to_pylist()[0]
    for c in FEATURE_COLUMNS:
        if c not in ("log_size", "tier_code", "site_tier"):      # from the name and size, or the training median
            assert row[c] == feat.FEATURE_DEFAULTS[c], c
