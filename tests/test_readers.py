"""Raw-log readers: clean reads, every damage kind, partial reads and schema drift."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import fsspec
import pyarrow as pa
import pytest
from rawlogs import avro_blocks, make_records, write_avro, write_json

from smartcache.tasks.common.schema import RAW_AVRO_SCHEMA, RAW_FIELDS
from smartcache.tasks.reduce import jsonl as readers_json
from smartcache.tasks.reduce.jsonl import inflate_backends
from smartcache.tasks.reduce.readers import (
    SourceError,
    detect_format,
    list_partitions,
    partition_day,
    read_partition,
    read_table,
)
from smartcache.tasks.reduce.report import REDUCE_COLUMNS

DAY = dt.date(2026, 3, 2)
INFLATE = list(inflate_backends())


@pytest.fixture(scope="module")
def recs():
    return make_records(DAY, 600, seed=1)


def _jobs(table: pa.Table) -> list:
    return list(zip(table["JobId"].to_pylist(), table["FileName"].to_pylist()))


def _keys(records: list[dict]) -> list:
    return [(r["JobId"], r["FileName"]) for r in records]


@pytest.mark.parametrize("fmt", ["avro", "json", "jsonl"])
def test_clean_read_returns_every_record_and_value(tmp_path, recs, fmt):
    path = {"avro": lambda: write_avro(tmp_path / "p.avro", recs),
            "json": lambda: write_json(tmp_path / "p.json.gz", recs),
            "jsonl": lambda: write_json(tmp_path / "p.jsonl", recs, gz=False)}[fmt]()
    table, rep = read_table(str(path), columns=None)
    assert rep.ok and not rep.partial and rep.records_read == len(recs) and rep.records_lost == 0
    assert table.to_pylist() == recs
    assert rep.n_bytes == path.stat().st_size


def test_projection_and_bounded_batches(tmp_path, recs):
    path = write_avro(tmp_path / "p.avro", recs)
    part = read_partition(str(path), columns=["FileName", "FileSize"], batch_size=50)
    batches = list(part)
    assert all(b.num_rows <= 50 for b in batches) and sum(b.num_rows for b in batches) == len(recs)
    assert batches[0].schema.names == ["FileName", "FileSize"]
    assert pa.Table.from_batches(batches)["FileSize"].to_pylist() == [r["FileSize"] for r in recs]


def test_default_projection_is_what_the_reduce_needs(tmp_path, recs):
    table, _ = read_table(str(write_json(tmp_path / "p.json.gz", recs)))
    assert table.column_names == list(REDUCE_COLUMNS)


def test_fsspec_urls(tmp_path, recs):
    path = write_json(tmp_path / "p.json.gz", recs)
    with fsspec.open("memory://logs/year=2026/month=3/day=2/part-00000.json.gz", "wb") as f:
        f.write(path.read_bytes())
    table, rep = read_table("memory://logs/year=2026/month=3/day=2/part-00000.json.gz")
    assert rep.ok and table.num_rows == len(recs)
    table, rep = read_table(path.as_uri())
    assert rep.ok and table.num_rows == len(recs)
    (listed,) = list_partitions("memory://logs")
    assert listed.startswith("memory://") and partition_day(listed) == DAY
    assert read_table(listed)[0].num_rows == len(recs)


def test_missing_source_raises(tmp_path):
    with pytest.raises(SourceError):
        read_partition(str(tmp_path / "nope.avro"))


# -- Avro damage -----------------------------------------------------------------------------------
def test_truncated_avro_keeps_the_complete_blocks(tmp_path, recs):
    path = write_avro(tmp_path / "p.avro", recs)
    _, blocks, _ = avro_blocks(path)
    assert len(blocks) > 4
    start, count, end = blocks[3]
    path.write_bytes(path.read_bytes()[: (start + end) // 2])
    table, rep = read_table(str(path))
    kept = sum(c for _, c, _ in blocks[:3])
    assert rep.partial and rep.kinds == ["truncated_avro"] and rep.lost_kind == "lower_bound"
    assert _jobs(table) == _keys(recs[:kept]) and rep.records_lost == count
    _, rep = read_table(str(path), expected_records=len(recs))
    assert rep.records_lost == len(recs) - kept and rep.lost_kind == "exact"


def test_bad_sync_marker_loses_exactly_one_block(tmp_path, recs):
    path = write_avro(tmp_path / "p.avro", recs)
    _, blocks, sync = avro_blocks(path)
    start, count, end = blocks[2]
    data = bytearray(path.read_bytes())
    data[end - 16:end] = bytes(16)
    path.write_bytes(bytes(data))
    table, rep = read_table(str(path))
    before = sum(c for _, c, _ in blocks[:2])
    assert rep.kinds == ["bad_sync"] and rep.partial
    assert rep.records_lost == count and rep.lost_kind == "exact"
    assert _jobs(table) == _keys(recs[:before] + recs[before + count:])


def test_corrupt_block_data_is_isolated(tmp_path, recs):
    path = write_avro(tmp_path / "p.avro", recs, codec="deflate")
    _, blocks, _ = avro_blocks(path)
    start, count, end = blocks[4]
    data = bytearray(path.read_bytes())
    for i in range(start + 8, start + 40):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    table, rep = read_table(str(path))
    before = sum(c for _, c, _ in blocks[:4])
    assert rep.kinds == ["corrupt_block"] and rep.records_lost == count and rep.lost_kind == "exact"
    assert _jobs(table) == _keys(recs[:before] + recs[before + count:])


def test_damaged_block_header_resyncs_at_the_next_marker(tmp_path, recs):
    path = write_avro(tmp_path / "p.avro", recs)
    _, blocks, _ = avro_blocks(path)
    start, count, end = blocks[2]
    data = bytearray(path.read_bytes())
    data[start:start + 3] = b"\xff\xff\xff"           # the record count varint and more
    path.write_bytes(bytes(data))
    table, rep = read_table(str(path))
    before = sum(c for _, c, _ in blocks[:2])
    assert "bad_sync" in rep.kinds and rep.partial and rep.lost_kind == "estimate"
    assert _jobs(table) == _keys(recs[:before] + recs[before + count:])
    assert count // 2 <= rep.records_lost <= count * 2


def test_not_avro_and_empty_files_are_unreadable(tmp_path):
    bad = tmp_path / "x.avro"
    bad.write_bytes(b"this is not avro at all")
    table, rep = read_table(str(bad))
    assert rep.unreadable and rep.kinds == ["bad_header"] and table.num_rows == 0
    for name in ("e.avro", "e.json.gz", "e.json"):
        (tmp_path / name).write_bytes(b"")
        table, rep = read_table(str(tmp_path / name))
        assert rep.unreadable and rep.kinds == ["empty"] and table.num_rows == 0 and rep.n_bytes == 0


def _drifted_schema(rename: dict | None = None, drop: str | None = None, retype: dict | None = None) -> dict:
    fields = []
    for f in RAW_AVRO_SCHEMA["fields"]:
        if f["name"] == drop:
            continue
        name = (rename or {}).get(f["name"], f["name"])
        typ = ["null", (retype or {})[f["name"]]] if f["name"] in (retype or {}) else f["type"]
        fields.append({"name": name, "type": typ, "default": None})
    return dict(RAW_AVRO_SCHEMA, fields=fields)


def test_avro_renamed_or_missing_required_field(tmp_path, recs):
    renamed = [{("Filename" if k == "FileName" else k): v for k, v in r.items()} for r in recs]
    path = write_avro(tmp_path / "r.avro", renamed, schema=_drifted_schema(rename={"FileName": "Filename"}))
    table, rep = read_table(str(path))
    assert rep.unreadable and rep.kinds == ["schema_drift"] and table.num_rows == 0
    assert rep.records_dropped == len(recs) and "Filename" in rep.unknown_fields and "FileName" in rep.reason
    no_site = [{k: v for k, v in r.items() if k != "SiteName"} for r in recs]
    path = write_avro(tmp_path / "m.avro", no_site, schema=_drifted_schema(drop="SiteName"))
    _, rep = read_table(str(path))
    assert rep.unreadable and rep.dropped_by == {"missing:SiteName": len(recs)}


def test_avro_missing_optional_field_reads_as_null(tmp_path, recs):
    no_user = [{k: v for k, v in r.items() if k != "UserId"} for r in recs]
    path = write_avro(tmp_path / "m.avro", no_user, schema=_drifted_schema(drop="UserId"))
    table, rep = read_table(str(path))
    assert rep.ok and table.num_rows == len(recs) and table["UserId"].null_count == len(recs)
    assert rep.missing_fields == ("UserId",)


def test_avro_wrong_type_is_coerced_or_dropped(tmp_path, recs):
    retyped = [dict(r, FileSize=None if r["FileSize"] is None else str(r["FileSize"])) for r in recs]
    retyped[5]["FileSize"] = "n/a"
    path = write_avro(tmp_path / "t.avro", retyped, schema=_drifted_schema(retype={"FileSize": "string"}))
    table, rep = read_table(str(path))
    assert rep.records_read == len(recs) - 1 and rep.dropped_by == {"bad_type:FileSize": 1}
    assert table["FileSize"].to_pylist() == [r["FileSize"] for i, r in enumerate(recs) if i != 5]
    assert rep.kinds == ["schema_drift"] and rep.partial


# -- gzip / JSON damage ----------------------------------------------------------------------------
@pytest.mark.parametrize("inflate", INFLATE)
def test_truncated_gzip_keeps_the_lines_before_the_cut(tmp_path, recs, inflate):
    path = write_json(tmp_path / "p.json.gz", recs)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 5])
    table, rep = read_table(str(path), inflate=inflate)
    assert rep.kinds == ["truncated_gzip"] and rep.partial and rep.lost_kind == "lower_bound"
    n = table.num_rows
    assert 0 < n < len(recs) and _jobs(table) == _keys(recs[:n])
    _, rep = read_table(str(path), inflate=inflate, expected_records=len(recs))
    assert rep.records_lost == len(recs) - n and rep.lost_kind == "exact"


@pytest.mark.parametrize("inflate", INFLATE)
def test_not_gzip_is_unreadable(tmp_path, inflate):
    path = tmp_path / "p.json.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    table, rep = read_table(str(path), inflate=inflate)
    assert rep.unreadable and rep.kinds == ["bad_gzip"] and table.num_rows == 0


@pytest.mark.parametrize("inflate", INFLATE)
def test_corrupt_gzip_stream_keeps_what_decoded(tmp_path, recs, inflate):
    path = write_json(tmp_path / "p.json.gz", recs)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    table, rep = read_table(str(path), inflate=inflate)
    assert "bad_gzip" in rep.kinds and rep.partial
    n = table.num_rows
    assert 0 < n < len(recs) and _jobs(table) == _keys(recs[:n])     # nothing after the damage survives as garbage
    assert rep.records_lost > 0 and rep.lost_kind == "estimate"
    _, rep = read_table(str(path), inflate=inflate, expected_records=len(recs))
    assert rep.records_lost == len(recs) - n


@pytest.mark.parametrize("inflate", INFLATE)
def test_multi_member_gzip_and_trailing_zeros(tmp_path, recs, inflate):
    half = len(recs) // 2
    text = [("".join(json.dumps(r) + "\n" for r in part)).encode() for part in (recs[:half], recs[half:])]
    path = tmp_path / "p.json.gz"
    path.write_bytes(gzip.compress(text[0]) + gzip.compress(text[1]) + bytes(512))
    table, rep = read_table(str(path), inflate=inflate)
    assert rep.ok and _jobs(table) == _keys(recs)


@pytest.fixture
def small_chunks(monkeypatch):
    """Make the JSON reader cut tiny chunks, so damage is isolated by bisection within a small file."""
    monkeypatch.setattr(readers_json, "CHUNK_BYTES", 20_000)
    monkeypatch.setattr(readers_json, "LEAF_BYTES", 2_000)


def test_bad_json_lines_are_counted_exactly(tmp_path, recs, small_chunks):
    lines = [json.dumps(r) for r in recs]
    bad_at = [3, 150, 151, 400]
    for i in bad_at:
        lines[i] = lines[i][: len(lines[i]) // 2]            # cut lines
    lines.insert(300, "[1, 2, 3]")                           # valid JSON, not an object
    path = tmp_path / "p.json.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    table, rep = read_table(str(path))
    assert rep.kinds == ["bad_json"] and rep.records_lost == 5 and rep.lost_kind == "exact"
    assert _jobs(table) == _keys([r for i, r in enumerate(recs) if i not in bad_at])


def test_json_drift_from_the_middle(tmp_path, recs, small_chunks):
    half = len(recs) // 2
    drifted = recs[:half] + [{("Filename" if k == "FileName" else k): v for k, v in r.items()} for r in recs[half:]]
    table, rep = read_table(str(write_json(tmp_path / "p.json.gz", drifted)))
    assert rep.records_read == half and rep.dropped_by == {"missing:FileName": len(recs) - half}
    assert rep.kinds == ["schema_drift"] and rep.partial and _jobs(table) == _keys(recs[:half])


def test_json_drift_from_the_first_line(tmp_path, recs):
    drifted = [{k: v for k, v in r.items() if k != "SiteName"} for r in recs]
    table, rep = read_table(str(write_json(tmp_path / "p.json.gz", drifted)))
    assert rep.unreadable and rep.dropped_by == {"missing:SiteName": len(recs)} and "SiteName" in rep.reason


def test_json_wrong_types_coerced_or_dropped(tmp_path, recs, small_chunks):
    rows = [dict(r) for r in recs]
    for i in range(100, 200):
        rows[i]["FileSize"] = None if rows[i]["FileSize"] is None else str(rows[i]["FileSize"])
    rows[250]["FileSize"] = "lots"
    rows[260]["SuccessFlag"] = {"nested": 1}
    rows[270]["UserId"] = 7.0                               # integral float: coerced
    rows[280]["JobId"] = 12345                              # a number where a string is due: coerced
    table, rep = read_table(str(write_json(tmp_path / "p.json.gz", rows)))
    assert rep.dropped_by == {"bad_type:FileSize": 1, "bad_type:SuccessFlag": 1}
    keep = [r for i, r in enumerate(recs) if i not in (250, 260)]
    assert table["FileSize"].to_pylist() == [r["FileSize"] for r in keep]
    assert table["UserId"].to_pylist()[268] == 7 and table["JobId"].to_pylist()[278] == "12345"
    assert rep.kinds == ["schema_drift"] and rep.records_read == len(recs) - 2


def test_null_required_values_are_not_drift(tmp_path, recs):
    rows = [dict(r) for r in recs]
    rows[10]["SiteName"] = None                              # a null is data, an absent key is drift
    table, rep = read_table(str(write_json(tmp_path / "p.json.gz", rows)))
    assert rep.ok and table.num_rows == len(recs) and table["SiteName"].null_count == 1


# -- helpers ---------------------------------------------------------------------------------------
def test_partition_naming(tmp_path):
    assert partition_day("root/year=2026/month=3/day=7/part-00000.avro") == dt.date(2026, 3, 7)
    assert partition_day("logs-2026-03-08.json.gz") == dt.date(2026, 3, 8)
    assert partition_day("whatever.avro") is None
    assert detect_format("x.avro") == ("avro", False) and detect_format("x.json.gz") == ("json", True)
    assert detect_format("x.bin", b"Obj\x01") == ("avro", False)
    with pytest.raises(SourceError):
        detect_format("x.bin", b"\x00\x01")
    for d in (dt.date(2026, 3, 7), dt.date(2026, 3, 8)):
        p = tmp_path / f"year={d.year}/month={d.month}/day={d.day}/part-00000.avro"
        p.parent.mkdir(parents=True)
        p.write_bytes(b"")
    (tmp_path / "_manifest.json").write_text("{}")
    assert [partition_day(p) for p in list_partitions(tmp_path)] == [dt.date(2026, 3, 7), dt.date(2026, 3, 8)]
    assert len(list_partitions(tmp_path, [dt.date(2026, 3, 8), dt.date(2026, 3, 9)])) == 1


def test_raw_fields_cover_the_schema():
    assert [f["name"] for f in RAW_AVRO_SCHEMA["fields"]] == [n for n, _, _ in RAW_FIELDS]


def test_block_size_damaged_past_the_end_is_not_truncation(tmp_path, recs):
    path = write_avro(tmp_path / "p.avro", recs)
    _, blocks, _ = avro_blocks(path)
    start, count, end = blocks[1]
    data = bytearray(path.read_bytes())
    n = 1 if data[start] < 0x80 else 2                     # bytes of the count varint
    big = len(data) * 4                                    # a size running past the end of the file
    enc = bytearray()
    z = big << 1
    while z & ~0x7F:
        enc.append((z & 0x7F) | 0x80)
        z >>= 7
    enc.append(z)
    size_len = 1
    while data[start + n + size_len - 1] & 0x80:
        size_len += 1
    data[start + n:start + n + size_len] = enc
    path.write_bytes(bytes(data))
    table, rep = read_table(str(path))
    assert rep.kinds == ["bad_sync"] and "truncated_avro" not in rep.kinds
    assert _jobs(table) == _keys(recs[:blocks[0][1]] + recs[blocks[0][1] + count:])
