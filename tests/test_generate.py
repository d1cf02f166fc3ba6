"""The synthetic CMS access-log generator: layout, determinism, realism, calibration, damage, CLI."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
import zlib
from collections import Counter
from pathlib import Path

import click
import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from smartcache.catalog.config import load_config
from smartcache.submit.cli.generate import commands
from smartcache.tasks.common.schema import RAW_ARROW_SCHEMA, RAW_AVRO_SCHEMA
from smartcache.tasks.generate import corrupt as gen_corrupt
from smartcache.tasks.generate.encode import avro_file
from smartcache.tasks.generate.task import (
    GeneratorError,
    World,
    generate_day,
    generate_logs,
    main,
    month_window,
    partition_counts,
    reuse_ceiling,
)

GUID = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"
DATA_LFN = re.compile(rf"^/store/data/(Run20\d\d[A-H]|Commissioning20\d\d)/([\w-]+)/(RAW|AOD|MINIAOD|NANOAOD)/([\w-]+-v\d+|v\d+)"
                      rf"/000/\d{{3}}/\d{{3}}/00000/{GUID}\.root$")
MC_LFN = re.compile(rf"^/store/mc/(Run3\w+)/([\w-]+)/(GEN-SIM|AODSIM|MINIAODSIM|NANOAODSIM)/(\w+-v\d+)/\d+/{GUID}\.root$")
DATASET = re.compile(r"^/([\w-]+)/([\w-]+)/([A-Z-]+)$")
SITES = {"T1_IT_CNAF", "T2_IT_Pisa", "T2_IT_Legnaro", "T2_IT_Bari", "T2_IT_Rome", "T2_US_Caltech", "T2_US_UCSD",
         "T2_US_Wisconsin", "T2_US_Nebraska", "T2_US_Purdue", "T2_US_MIT", "T2_US_Florida", "T2_US_Vanderbilt",
         "T1_US_FNAL"}
DAY0 = dt.date(2026, 9, 14)


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0)


@pytest.fixture(scope="module")
def sample(world) -> pa.Table:
    """Three consecutive days of default-scale records."""
    return pa.concat_tables([generate_day(DAY0 + dt.timedelta(days=i), world=world) for i in range(3)])


def _read_avro(path: Path) -> list[dict]:
    with path.open("rb") as f:
        return list(fastavro.reader(f))


def _read_json(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]


def test_month_window():
    assert month_window(6, "2026-10") == (dt.date(2026, 5, 1), dt.date(2026, 10, 31))
    assert month_window(3, (2026, 2)) == (dt.date(2025, 12, 1), dt.date(2026, 2, 28))
    assert month_window(1, None, today=dt.date(2026, 1, 15)) == (dt.date(2025, 12, 1), dt.date(2025, 12, 31))
    for bad in ("2026-13", "oct", "2026"):
        with pytest.raises(GeneratorError):
            month_window(1, bad)
    with pytest.raises(GeneratorError):
        month_window(0, "2026-10")


def test_records_schema_and_cms_naming(sample):
    assert sample.schema == RAW_ARROW_SCHEMA
    assert sample.num_rows > 20_000
    rows = sample.select(["FileName", "InputCollection", "BlockName", "SiteName"]).to_pylist()
    for r in rows:
        m = DATA_LFN.match(r["FileName"]) or MC_LFN.match(r["FileName"])
        assert m, r["FileName"]
        d = DATASET.match(r["InputCollection"])
        assert d, r["InputCollection"]
        primary, processed, tier = d.groups()
        assert (m.group(2), m.group(3)) == (primary, tier)
        assert processed.startswith(m.group(1) + "-")          # era / campaign of the LFN
        assert re.fullmatch(re.escape(r["InputCollection"]) + r"#[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}",
                            r["BlockName"])
    assert {r["SiteName"] for r in rows} == SITES
    # one block id per block name, one dataset per file
    pairs = sample.group_by(["BlockName", "BlockId"]).aggregate([])
    assert pairs.num_rows == len(pc.unique(sample["BlockName"])) == len(pc.unique(sample["BlockId"]))
    assert sample.group_by(["FileName", "InputCollection"]).aggregate([]).num_rows == len(pc.unique(sample["FileName"]))


def test_record_semantics(sample):
    day_ms = 86_400_000
    fin, sta = sample["FinishedTimeStamp"].to_numpy(), sample["StartedRunningTimeStamp"].to_numpy()
    assert (sta <= fin).all() and (np.diff(fin) >= 0).all()       # each partition in finish order
    days = fin // day_ms
    assert set(days) == {(DAY0 - dt.date(1970, 1, 1)).days + i for i in range(3)}
    assert (sample["JobExecExitTimeStamp"].to_numpy() == fin).all()
    t = sample.to_pydict()
    counts = Counter((ty, tool) for ty, tool in zip(t["Type"], t["SubmissionTool"]))
    assert set(counts) == {("analysis", "crab3"), ("production", "wmagent")}
    assert 0.03 < counts[("production", "wmagent")] / sample.num_rows < 0.35
    ok, code = np.array(t["SuccessFlag"]), np.array(t["JobExecExitCode"])
    assert ((ok == 1) == (code == 0)).all() and 0.02 < (ok == 0).mean() < 0.2
    remote = np.array([p == "Remote" for p in t["ProtocolUsed"]])
    assert set(t["ProtocolUsed"]) == {"Local", "Remote"} and 0.02 < remote.mean() < 0.3
    file_error = np.isin(code, [8020, 8021, 8028])
    assert file_error[(ok == 0) & remote].mean() > 1.5 * file_error[(ok == 0) & ~remote].mean()
    null = sum(x is None for x in t["FileSize"])
    assert 0 < null < 0.02 * sample.num_rows
    # a job reads its files in one go: one JobId -> one site, one task, one start time
    jobs = sample.group_by("JobId").aggregate([("SiteName", "count_distinct"), ("TaskId", "count_distinct"),
                                                ("StartedRunningTimeStamp", "count_distinct")])
    assert all(pc.max(jobs[c]).as_py() == 1 for c in jobs.column_names if c.endswith("distinct"))


def test_file_sizes_per_tier(sample):
    t = sample.filter(pc.is_valid(sample["FileSize"])).group_by(["FileName", "InputCollection"]).aggregate(
        [("FileSize", "max")])
    tiers = [d.rsplit("/", 1)[1] for d in t["InputCollection"].to_pylist()]
    size = t["FileSize_max"].to_numpy() / 1e9
    med = {tier: float(np.median(size[[x == tier for x in tiers]])) for tier in set(tiers)}
    nano = [med[x] for x in ("NANOAOD", "NANOAODSIM") if x in med]
    mini = [med[x] for x in ("MINIAOD", "MINIAODSIM") if x in med]
    big = [med[x] for x in ("AOD", "AODSIM", "RAW") if x in med]
    assert nano and mini and big
    assert all(0.5 < m < 1.5 for m in nano) and all(1.7 < m < 3.3 for m in mini) and all(2.2 < m < 4.8 for m in big)
    assert max(nano) < min(mini) < max(big)
    lo, hi = np.quantile(size, [0.05, 0.95])
    assert 0.2 < lo and hi < 6.0 and size.max() > 2 * hi      # ~0.5-5 GB with a heavy tail


def test_reuse_ceiling_function_on_a_known_trace():
    day = 20_000 * 86_400_000
    rows = [("T2_IT_Pisa", "/a", day), ("T1_IT_CNAF", "/a", day), ("T2_IT_Bari", "/b", day),
            ("T2_IT_Pisa", "/c", day), ("T2_US_UCSD", "/a", day), ("T2_US_UCSD", "/a", day + 86_400_000),
            ("T2_US_MIT", "/z", day + 86_400_000)]
    t = pa.table({"SiteName": [r[0] for r in rows], "FileName": [r[1] for r in rows],
                  "FinishedTimeStamp": pa.array([r[2] for r in rows], pa.int64()),
                  "Type": ["analysis"] * len(rows), "SuccessFlag": pa.array([1] * len(rows), pa.int32())})
    extra = pa.table({"SiteName": ["T2_IT_Pisa"], "FileName": ["/c"], "FinishedTimeStamp": pa.array([day], pa.int64()),
                      "Type": ["production"], "SuccessFlag": pa.array([1], pa.int32())})
    c = reuse_ceiling(pa.concat_tables([t, extra]))
    assert c["IT"] == pytest.approx((4 - 3) / 4)
    assert c["US"] == pytest.approx(0.0)                       # each US day reads distinct files


def test_reuse_ceiling_is_calibrated(world):
    tables = [generate_day(dt.date(2026, 3, 2) + dt.timedelta(days=i), world=world) for i in range(14)]
    c = reuse_ceiling(pa.concat_tables(tables))
    assert 0.25 < c["IT"] < 0.37, c                            # CMS 2018: 30.6 %
    assert 0.37 < c["US"] < 0.49, c                            # CMS 2018: 42.5 %
    assert c["US"] - c["IT"] > 0.05


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_layout_manifest_and_round_trip(tmp_path, fmt):
    res = generate_logs(tmp_path / "raw", start="2026-02-27", days=3, fmt=fmt, seed=0, scale=0.3)
    ext = "avro" if fmt == "avro" else "json.gz"
    rel = sorted(str(p.relative_to(tmp_path / "raw")) for p in res.partitions)
    assert rel == [f"year=2026/month=2/day=27/part-00000.{ext}", f"year=2026/month=2/day=28/part-00000.{ext}",
                   f"year=2026/month=3/day=1/part-00000.{ext}"]
    manifest = json.loads(res.manifest.read_text())
    assert not (tmp_path / "raw" / "_corrupt.json").exists()
    total = Counter()
    for entry, path in zip(manifest["partitions"], res.partitions):
        recs = _read_avro(path) if fmt == "avro" else _read_json(path)
        expected = generate_day(entry["date"], seed=0, scale=0.3)
        assert recs == expected.to_pylist()                    # schema round trip, values and order
        # an independent count of the categories, in plain Python
        c = Counter()
        for r in recs:
            c["records"] += 1
            if r["Type"] == "production":
                c["production"] += 1
            elif r["SuccessFlag"] != 1:
                c["failed"] += 1
            else:
                c["analysis_ok" if r["FileSize"] is not None else "null_size"] += 1
        assert all(entry[k] == c[k] for k in ("records", "analysis_ok", "null_size", "failed", "production"))
        assert entry["analysis_ok_site_files"] == len({(r["SiteName"], r["FileName"]) for r in recs
                                                       if r["Type"] == "analysis" and r["SuccessFlag"] == 1
                                                       and r["FileSize"] is not None})
        total.update(c)
    assert manifest["totals"]["records"] == total["records"] == res.records
    if fmt == "avro":
        with res.partitions[0].open("rb") as f:
            reader = fastavro.reader(f)
            assert reader.metadata["avro.codec"] == "deflate"
            assert json.loads(reader.metadata["avro.schema"]) == RAW_AVRO_SCHEMA


def test_same_seed_same_bytes_and_days_are_independent(tmp_path):
    a = generate_logs(tmp_path / "a", start="2026-06-01", days=3, seed=7, fmt="json", scale=0.3)
    b = generate_logs(tmp_path / "b", start="2026-06-01", days=3, seed=7, fmt="json", scale=0.3)
    c = generate_logs(tmp_path / "c", start="2026-06-02", days=1, seed=7, fmt="json", scale=0.3)
    d = generate_logs(tmp_path / "d", start="2026-06-01", days=3, seed=8, fmt="json", scale=0.3)
    for pa_, pb in zip(a.partitions, b.partitions):
        assert pa_.read_bytes() == pb.read_bytes()
    assert (tmp_path / "a" / "_manifest.json").read_bytes() == (tmp_path / "b" / "_manifest.json").read_bytes()
    assert c.partitions[0].read_bytes() == a.partitions[1].read_bytes()     # a day does not depend on its window
    assert all(x.read_bytes() != y.read_bytes() for x, y in zip(a.partitions, d.partitions))


def test_parallel_workers_write_the_same_bytes(tmp_path):
    one = generate_logs(tmp_path / "one", start="2026-01-10", days=8, scale=0.02, seed=3, workers=1)
    two = generate_logs(tmp_path / "two", start="2026-01-10", days=8, scale=0.02, seed=3, workers=2)
    assert two.workers == 2
    assert [p.read_bytes() for p in one.partitions] == [p.read_bytes() for p in two.partitions]


def test_encoder_is_byte_identical_to_fastavro(sample):
    t = sample.slice(0, 1500)
    # exercise nulls in every Avro type the schema uses
    mask = pa.array(np.arange(t.num_rows) % 7 == 3)
    for name in ("JobId", "IsParentFile", "SuccessFlag", "BlockId", "WrapWC"):
        col = t.column(name).combine_chunks()
        t = t.set_column(t.schema.get_field_index(name), name, pc.if_else(mask, pa.nulls(len(col), col.type), col))
    sync = bytes(range(16))
    ref = io.BytesIO()
    fastavro.writer(ref, RAW_AVRO_SCHEMA, t.to_pylist(), codec="null", sync_marker=sync, sync_interval=64_000)
    mine = avro_file(t, RAW_AVRO_SCHEMA, sync, codec="null")
    assert mine.data == ref.getvalue()
    assert len(mine.block_starts) > 1
    assert list(fastavro.reader(io.BytesIO(avro_file(t, RAW_AVRO_SCHEMA, sync).data))) == t.to_pylist()


def _damaged_avro_behaviour(path: Path, kind: str) -> None:
    if kind == "empty":
        assert path.stat().st_size == 0
    elif kind == "schema_drift":
        with path.open("rb") as f:
            reader = fastavro.reader(f)
            assert reader.writer_schema["fields"] != fastavro.parse_schema(RAW_AVRO_SCHEMA)["fields"]
            assert len(list(reader)) > 0
    else:
        got = []
        with pytest.raises(Exception):
            with path.open("rb") as f:
                for rec in fastavro.reader(f):
                    got.append(rec)
        assert got                                              # blocks before the damage still read


def _damaged_json_behaviour(path: Path, kind: str, records: int) -> None:
    if kind == "empty":
        assert path.stat().st_size == 0
    elif kind == "schema_drift":
        lines = _read_json(path)
        fields = set(RAW_ARROW_SCHEMA.names)
        drifted = [i for i, x in enumerate(lines) if set(x) != fields or isinstance(x.get("FileSize"), str)]
        assert len(lines) == records and min(drifted) == records // 2      # the producer changed at noon
        assert len(drifted) > 0.9 * (records - records // 2)
    else:
        with pytest.raises((EOFError, zlib.error, gzip.BadGzipFile, OSError)):
            gzip.decompress(path.read_bytes())


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_corrupt_damages_exactly_k_partitions(tmp_path, fmt):
    out = tmp_path / "raw"
    res = generate_logs(out, start="2026-04-01", days=6, fmt=fmt, corrupt=5, scale=0.1, seed=4)
    listed = json.loads((out / "_corrupt.json").read_text())["partitions"]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert len(listed) == len({e["path"] for e in listed}) == 5 == len(res.corrupt)
    assert Counter(e["kind"] for e in listed) == Counter(gen_corrupt.KINDS + ("truncated",))
    by_path = {p["path"]: p for p in manifest["partitions"]}
    assert sorted(manifest["corrupt"]) == sorted(e["path"] for e in listed)
    for e in listed:
        assert e["records"] == by_path[e["path"]]["records"] > 0
        path = out / e["path"]
        if fmt == "avro":
            _damaged_avro_behaviour(path, e["kind"])
        else:
            _damaged_json_behaviour(path, e["kind"], e["records"])
    for rel, entry in by_path.items():                          # the others are intact
        if rel not in manifest["corrupt"]:
            recs = _read_avro(out / rel) if fmt == "avro" else _read_json(out / rel)
            assert len(recs) == entry["records"]
    # a clean rerun rewrites the damaged partitions and drops the damage list
    generate_logs(out, start="2026-04-01", days=6, fmt=fmt, scale=0.1, seed=4)
    assert not (out / "_corrupt.json").exists()
    with pytest.raises(GeneratorError):
        generate_logs(tmp_path / "x", start="2026-04-01", days=2, corrupt=3, scale=0.05)


def test_partition_counts_are_disjoint(sample):
    c = partition_counts(sample)
    assert c["records"] == c["analysis_ok"] + c["null_size"] + c["failed"] + c["production"]
    assert min(c[k] for k in ("analysis_ok", "null_size", "failed", "production")) > 0


def _cli() -> click.Group:
    @click.group()
    def root() -> None:
        pass

    for cmd in commands:
        root.add_command(cmd)
    return root


def test_cli_generate_logs(tmp_path):
    config = load_config(env={"SMARTCACHE_HOME": str(tmp_path)})
    runner = CliRunner()
    res = runner.invoke(_cli(), ["generate", "logs", "--months", "1", "--end", "2026-02", "--format", "json",
                                 "--scale", "0.03", "--seed", "5", "--corrupt", "1", "--workers", "1",
                                 "--no-progress"], obj=config)
    assert res.exit_code == 0, res.output
    raw = config.data_root / "raw"
    manifest = json.loads((raw / "_manifest.json").read_text())
    assert manifest["days"] == 28 and manifest["start"] == "2026-02-01" and len(manifest["corrupt"]) == 1
    assert (raw / "year=2026/month=2/day=28/part-00000.json.gz").exists()
    assert "wrote 28 json partitions" in res.output
    bad = runner.invoke(_cli(), ["generate", "logs", "--months", "1", "--end", "2026-14", "--out",
                                 str(tmp_path / "o")], obj=config)
    assert bad.exit_code != 0 and "YYYY-MM" in bad.output


def test_task_main(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--start", "2026-05-05", "--days", "2", "--scale", "0.05",
                 "--no-progress"]) == 0
    assert "wrote 2 avro partitions" in capsys.readouterr().out
    assert main(["--out", str(tmp_path), "--format", "avro", "--scale", "-1", "--days", "1"]) == 1


def test_big_days_are_written_as_part_files(tmp_path, world):
    """A day above ``part_records`` becomes several parts, built one at a time; ids stay unique in the day."""
    day = (DAY0 - dt.date(1970, 1, 1)).days
    whole = world.day(day)
    assert next(world.parts(day, whole.num_rows * 2)).equals(whole)          # small enough: the day itself
    parts = list(world.parts(day, 4000))
    assert len(parts) >= 3 and all(p.num_rows for p in parts)
    assert 0.8 < sum(p.num_rows for p in parts) / whole.num_rows < 1.2
    jobs = [set(p["JobId"].to_pylist()) for p in parts]
    tasks = [set(p["TaskId"].to_pylist()) for p in parts]
    for i in range(len(parts)):
        for j in range(i):
            assert not jobs[i] & jobs[j] and not tasks[i] & tasks[j]
    for p in parts:
        fin = p["FinishedTimeStamp"].to_numpy()
        assert (np.diff(fin) >= 0).all() and (fin // 86_400_000 == day).all()
    out = tmp_path / "raw"
    res = generate_logs(out, start=DAY0, days=2, scale=1, seed=0, part_records=4000, corrupt=1, workers=1)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert len(manifest["partitions"]) == len(res.partitions) > 4 and manifest["part_records"] == 4000
    assert {p["path"].rsplit("/", 1)[0] for p in manifest["partitions"]} == {
        f"year={d.year}/month={d.month}/day={d.day}" for d in (DAY0, DAY0 + dt.timedelta(days=1))}
    assert len(res.corrupt) == 1 and res.corrupt[0].path.endswith("part-00000.avro")
    first = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("part-*")}
    generate_logs(out, start=DAY0, days=2, scale=1, seed=0, part_records=4000, corrupt=1, workers=2)
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("part-*")} == first   # same bytes


def test_progress_lines_off_a_terminal(tmp_path, capsys):
    from smartcache.tasks.generate.progress import Progress
    with Progress(3, True, every_s=0.0) as bar:
        for _ in range(3):
            bar.done([{"records": 10, "bytes": 2**20}])
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("generate: 3/3 days, 30 records, 0.00 GiB") and len(lines) == 3
    with Progress(3, False, every_s=0.0) as bar:
        bar.done([{"records": 1, "bytes": 1}])
    assert capsys.readouterr().err == ""
