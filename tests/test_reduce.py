"""The REDUCE task: aggregates against a plain-Python reference, filters, idempotence, damage handling."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rawlogs import make_records, partition_file, write, write_avro

from smartcache.catalog import open_store
from smartcache.tasks.common.schema import REDUCED_SCHEMA
from smartcache.tasks.reduce import nodestats
from smartcache.tasks.reduce import task as reduce_task
from smartcache.tasks.reduce.aggregate import Aggregator, SiteFilter, filter_batch
from smartcache.tasks.reduce.readers import list_partitions, read_partition
from smartcache.tasks.reduce.task import output_path, reduce_partitions

DAYS = [dt.date(2026, 3, 1), dt.date(2026, 3, 2)]


def _reason(r: dict, sites=None, region=None) -> str | None:
    """Why the reduce drops a record (None = kept): the documented rules, one record at a time."""
    if (r["Type"] or "").lower() != "analysis":
        return "not_analysis"
    ok = r["SuccessFlag"] == 1 if r["SuccessFlag"] is not None else r["JobExecExitCode"] == 0
    if not ok:
        return "failed"
    if not r["FileSize"] or r["FileSize"] <= 0:
        return "no_size"
    if not r["FileName"]:
        return "no_file"
    if not r["SiteName"]:
        return "no_site"
    if (sites and r["SiteName"] not in sites) or (region and r["SiteName"].split("_")[1] != region):
        return "other_site"
    return None


def reference(by_day: dict, sites=None, region=None) -> tuple[dict, dict]:
    rows, dropped = {}, {}
    for day, recs in by_day.items():
        for r in recs:
            why = _reason(r, sites, region)
            if why:
                dropped[why] = dropped.get(why, 0) + 1
                continue
            key = (day, r["SiteName"], r["FileName"])
            a = rows.setdefault(key, {"n": 0, "jobs": set(), "users": set(), "tasks": set(), "cpu": 0.0, "wall": 0.0,
                                      "first": None, "last": None, "local": 0, "size": 0, "ds": r["InputCollection"]})
            ts = r["StartedRunningTimeStamp"]
            a["n"] += 1
            a["jobs"].add(r["JobId"])
            if r["UserId"] is not None:
                a["users"].add(r["UserId"])
            if r["TaskId"] is not None:
                a["tasks"].add(r["TaskId"])
            a["cpu"] += r["WrapCPU"] or 0.0
            a["wall"] += r["WrapWC"] or 0.0
            a["first"] = ts if a["first"] is None else min(a["first"], ts)
            a["last"] = ts if a["last"] is None else max(a["last"], ts)
            a["local"] += r["ProtocolUsed"] == "Local"
            a["size"] = max(a["size"], r["FileSize"])
    out = {}
    for (day, site, lfn), a in rows.items():
        out[(day, site, lfn)] = {
            "day": day, "site": site, "lfn": lfn, "dataset": a["ds"], "tier": a["ds"].rsplit("/", 1)[-1],
            "size": a["size"], "n_access": a["n"], "n_jobs": len(a["jobs"]), "n_users": len(a["users"]),
            "n_tasks": len(a["tasks"]), "cpu_s": a["cpu"], "wall_s": a["wall"], "first_ts": a["first"],
            "last_ts": a["last"], "local_frac": a["local"] / a["n"]}
    return out, dropped


def _rows(paths) -> dict:
    out = {}
    for p in paths:
        t = pq.read_table(p)
        assert t.schema.equals(REDUCED_SCHEMA)
        for r in t.to_pylist():
            out[(r["day"], r["site"], r["lfn"])] = r
    return out


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, w in want.items():
        g = got[k]
        for col, v in w.items():
            assert g[col] == (pytest.approx(v) if isinstance(v, float) else v), (k, col)


@pytest.fixture
def by_day():
    recs = {d: make_records(d, 900, seed=i) for i, d in enumerate(DAYS)}
    recs[DAYS[0]][0].update(SuccessFlag=None, JobExecExitCode=0)         # null flag: the exit code decides
    recs[DAYS[0]][1].update(SuccessFlag=None, JobExecExitCode=1, Type="analysis")
    recs[DAYS[0]][2].update(Type="Analysis", SuccessFlag=1, FileSize=0)  # case of Type; zero size
    recs[DAYS[1]][3].update(Type="analysis", SuccessFlag=1, FileSize=5, SiteName=None)
    return recs


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_reduce_matches_reference(tmp_path, by_day, fmt):
    store = open_store(f"sqlite:///{tmp_path}/c.db", migrate=True)
    srcs = [str(write(tmp_path / "raw", d, recs, fmt)) for d, recs in by_day.items()]
    res = reduce_partitions(srcs, tmp_path / "out", store, None)
    want, dropped = reference(by_day)
    _assert_same(_rows(p.path for p in res.partitions), want)
    assert res.records_read == sum(len(r) for r in by_day.values())
    assert res.records_kept == sum(w["n_access"] for w in want.values())
    total = {}
    for p in res.partitions:
        for k, v in p.dropped.items():
            total[k] = total.get(k, 0) + v
    assert {k: v for k, v in total.items() if v} == dropped
    assert [p.path for p in res.partitions] == [output_path(tmp_path / "out", "reduced", d) for d in DAYS]
    ds = store.get_dataset("reduced/2026-03-01")
    assert ds.kind == "reduced" and ds.parents == ("raw/2026-03-01",) and ds.n_rows == res.partitions[0].n_rows
    assert ds.meta["records_read"] == len(by_day[DAYS[0]]) and ds.meta["dropped"] == res.partitions[0].dropped
    raw = store.get_dataset("raw/2026-03-01")
    assert raw.kind == "raw" and raw.n_rows == len(by_day[DAYS[0]]) and raw.uri == srcs[0]
    assert store.list_quarantine() == []


def test_site_and_region_filters(tmp_path, by_day):
    srcs = [str(write(tmp_path / "raw", d, recs)) for d, recs in by_day.items()]
    res = reduce_partitions(srcs, tmp_path / "out", None, None, region="US")
    _assert_same(_rows(p.path for p in res.partitions), reference(by_day, region="US")[0])
    assert res.partitions[0].path.parts[-5] == "reduced-US"
    sites = ["T2_IT_Pisa", "T2_US_UCSD"]
    res = reduce_partitions(srcs, tmp_path / "out", None, None, sites=sites)
    _assert_same(_rows(p.path for p in res.partitions), reference(by_day, sites=sites)[0])
    assert res.partitions[0].dropped["other_site"] > 0


def test_partials_merge_to_the_single_pass_result(tmp_path, by_day):
    path = write(tmp_path / "raw", DAYS[0], by_day[DAYS[0]] * 2)          # repeats: merges must dedupe ids
    one, many = Aggregator(), Aggregator(slice_rows=97, max_partial_rows=10**9)
    for batch in read_partition(str(path), batch_size=64):
        t, _ = filter_batch(batch, SiteFilter())
        one.add(t)
        many.add(t)
    assert len(many.partials) > 3 and many.spill is None
    a, b = one.result(DAYS[0]), many.result(DAYS[0])
    assert a.equals(b)
    want, _ = reference({DAYS[0]: by_day[DAYS[0]] * 2})
    _assert_same({(r["day"], r["site"], r["lfn"]): r for r in a.to_pylist()}, want)


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_rerun_is_idempotent(tmp_path, by_day):
    store = open_store(f"sqlite:///{tmp_path}/c.db", migrate=True)
    srcs = [str(write(tmp_path / "raw", d, recs)) for d, recs in by_day.items()]
    damaged = partition_file(tmp_path / "raw", dt.date(2026, 3, 3))
    damaged.write_bytes(b"")
    srcs.append(str(damaged))
    first = reduce_partitions(srcs, tmp_path / "out", store, None)
    shas = [_sha(p.path) for p in first.partitions if p.path]
    before = [(d.id, d.name, d.n_rows, d.checksum, d.parents) for d in store.list_datasets()]
    quarantine = [(q.id, q.source, q.reason) for q in store.list_quarantine()]
    second = reduce_partitions(srcs, tmp_path / "out", store, None)
    assert [_sha(p.path) for p in second.partitions if p.path] == shas
    assert [(d.id, d.name, d.n_rows, d.checksum, d.parents) for d in store.list_datasets()] == before
    assert [(q.id, q.source, q.reason) for q in store.list_quarantine()] == quarantine
    assert len(before) == 3 + 2 and len(quarantine) == 1
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_damaged_partitions_are_quarantined_then_released(tmp_path, by_day):
    store = open_store(f"sqlite:///{tmp_path}/c.db", migrate=True)
    run = store.create_run("reduce")
    raw = tmp_path / "raw"
    days = DAYS + [dt.date(2026, 3, 3)]
    recs = {**by_day, days[2]: make_records(days[2], 500, seed=9)}
    paths = {d: write(raw, d, r) for d, r in recs.items()}
    whole = paths[DAYS[1]].read_bytes()
    paths[DAYS[1]].write_bytes(whole[: len(whole) // 2])                # truncated
    paths[days[2]].write_bytes(b"\x00" * 100)                          # not Avro at all
    res = reduce_partitions([str(p) for p in paths.values()], tmp_path / "out", store, run.id)
    status = {p.day: p.status for p in res.partitions}
    assert status == {DAYS[0]: "ok", DAYS[1]: "partial", days[2]: "unreadable"}
    q = {x.source: x for x in store.list_quarantine(run_id=run.id)}
    assert set(q) == {str(paths[DAYS[1]]), str(paths[days[2]])}
    part = q[str(paths[DAYS[1]])]
    assert part.partial and 0 < part.records_read < len(recs[DAYS[1]]) and part.records_lost > 0
    assert "truncated_avro" in part.reason and part.n_bytes == len(whole) // 2
    assert not q[str(paths[days[2]])].partial and q[str(paths[days[2]])].records_read == 0
    assert paths[days[2]].read_bytes() == b"\x00" * 100                # left untouched
    partial_ds = store.get_dataset("reduced/2026-03-02")
    assert partial_ds.meta["partial"] and partial_ds.meta["records_read"] == part.records_read
    assert res.partitions[2].path is None
    with pytest.raises(Exception):
        store.get_dataset("reduced/2026-03-03")
    # repair and rerun: entries released, full outputs
    paths[DAYS[1]].write_bytes(whole)
    write(raw, days[2], recs[days[2]])
    res = reduce_partitions([str(p) for p in paths.values()], tmp_path / "out", store, run.id)
    assert [p.status for p in res.partitions] == ["ok"] * 3 and store.list_quarantine() == []
    _assert_same(_rows(p.path for p in res.partitions), reference(recs)[0])


def test_cli(tmp_path, by_day, capsys):
    url = f"sqlite:///{tmp_path}/c.db"
    store = open_store(url, migrate=True)
    run = store.create_run("reduce")
    for d, recs in by_day.items():
        write(tmp_path / "raw", d, recs, "json")
    rc = reduce_task.main(["--source-root", str(tmp_path / "raw"), "--day", "2026-03-01:2026-03-05", "--out",
                           str(tmp_path / "out"), "--catalog-url", url, "--run-id", str(run.id), "--json",
                           "--no-progress"])
    assert rc == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert [p["day"] for p in doc["partitions"]] == ["2026-03-01", "2026-03-02"]
    st = nodestats.parse(cap.err)                       # the node's cost line (DAG measurements)
    assert st["records"] == doc["records_read"] and st["days"] == 2 and st["bytes_in"] > st["bytes_out"] > 0
    assert st["cpu_s"] > 0 and st["peak_rss_mb"] > 50 and st["process_start"] <= st["main_start"] <= st["end"]
    assert {d.name for d in store.list_datasets(kind="reduced")} == {"reduced/2026-03-01", "reduced/2026-03-02"}
    assert all(d.run_id == run.id for d in store.list_datasets())
    assert reduce_task.main(["--out", str(tmp_path / "o"), "--no-catalog"]) == 1
    assert reduce_task.main([str(tmp_path / "missing.avro"), "--out", str(tmp_path / "o"), "--no-catalog"]) == 1


def test_dateless_source_takes_the_day_of_its_records(tmp_path, by_day):
    path = write_avro(tmp_path / "dump.avro", by_day[DAYS[1]])
    res = reduce_partitions([str(path)], tmp_path / "out", None, None)
    assert res.partitions[0].day == DAYS[1] and res.partitions[0].path.exists()


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_generated_logs_end_to_end(tmp_path, fmt):
    generate = pytest.importorskip("smartcache.tasks.generate.task")
    gen = generate.generate_logs(tmp_path / "raw", start="2026-03-01", days=6, fmt=fmt, scale=0.15, seed=5,
                                 corrupt=4, workers=1)
    store = open_store(f"sqlite:///{tmp_path}/c.db", migrate=True)
    res = reduce_partitions(list_partitions(tmp_path / "raw"), tmp_path / "out", store, None)
    manifest = json.loads((tmp_path / "raw" / "_manifest.json").read_text())
    by_path = {p["path"]: p for p in manifest["partitions"]}
    damaged = {c.path for c in gen.corrupt}
    quarantined = {q.source.split("/raw/", 1)[1] for q in store.list_quarantine()}
    assert quarantined == damaged
    for p in res.partitions:
        (rep,) = p.reports
        m = by_path[rep.source.split("/raw/", 1)[1]]
        assert rep.records_read + rep.records_dropped + rep.records_lost == m["records"]   # exact via the manifest
        if rep.ok or rep.dropped_by == {} and rep.records_lost == 0:    # clean, or drift repaired losslessly
            t = pq.read_table(p.path)
            assert p.records_kept == m["analysis_ok"] and t.num_rows == m["analysis_ok_site_files"]
            sizes = pa.compute.sum(pa.compute.multiply(t["size"], t["n_access"])).as_py()
            assert sizes == m["analysis_ok_bytes"]


def test_click_commands_pass_through(tmp_path, by_day, home):
    from click.testing import CliRunner

    from smartcache.catalog import load_config
    from smartcache.submit.cli.reduce import features, reduce
    cfg = load_config()
    for d, recs in by_day.items():
        write(tmp_path / "raw", d, recs)
    runner = CliRunner()
    res = runner.invoke(reduce, ["--source-root", str(tmp_path / "raw"), "--no-progress"], obj=cfg)
    assert res.exit_code == 0, res.output
    assert output_path(cfg.data_root, "reduced", DAYS[1]).exists()
    res = runner.invoke(features, ["--horizon", "1"], obj=cfg)
    assert res.exit_code == 0, res.output
    store = open_store(cfg.catalog_url)
    assert [d.name for d in store.list_datasets(kind="features")] == ["features/2026-03-01_2026-03-02_h1"]
    assert runner.invoke(features, ["--reduced", "nothing-here"], obj=cfg).exit_code == 1


def test_days_in_several_part_files_reduce_to_one_output_each(tmp_path):
    generate = pytest.importorskip("smartcache.tasks.generate.task")
    gen = generate.generate_logs(tmp_path / "raw", start="2026-03-01", days=2, scale=0.5, seed=2, part_records=2500,
                                 workers=1)
    sources = list_partitions(tmp_path / "raw")
    assert len(sources) > 2
    res = reduce_partitions(sources, tmp_path / "out", None, None)
    assert [p.day for p in res.partitions] == DAYS and all(len(p.sources) > 1 for p in res.partitions)
    assert res.records_read == gen.records and res.records_kept == gen.counts["analysis_ok"]
    manifest = json.loads((tmp_path / "raw" / "_manifest.json").read_text())
    pairs = {}
    for p in manifest["partitions"]:
        pairs.setdefault(p["date"], []).append(p)
    for p in res.partitions:
        t = pq.read_table(p.path)
        assert pa.compute.sum(t["n_access"]).as_py() == sum(x["analysis_ok"] for x in pairs[p.day.isoformat()])


def test_partials_spilled_to_disk_by_site_give_the_in_memory_result(tmp_path, by_day):
    path = write(tmp_path / "raw", DAYS[0], by_day[DAYS[0]] * 3)
    memory, spilled = Aggregator(), Aggregator(slice_rows=150, max_partial_rows=200)
    for batch in read_partition(str(path), batch_size=100):
        t, _ = filter_batch(batch, SiteFilter())
        memory.add(t)
        spilled.add(t)
    assert spilled.spill is not None and len(spilled.spill.files) > 1
    folder = spilled.spill.dir
    a, b = memory.result(DAYS[0]), spilled.result(DAYS[0])
    assert a.equals(b) and not folder.exists()
