"""The column-wise Avro decoder against the fastavro path: same tables, same reports, on clean,
drifted, damaged and fuzzed containers; and the fallback to fastavro where the fast path stops."""

from __future__ import annotations

import datetime as dt
import random

import fastavro
import pyarrow as pa
import pytest
from rawlogs import avro_blocks, make_records, write_avro

from smartcache.tasks.common.schema import RAW_AVRO_SCHEMA
from smartcache.tasks.reduce import avro_columns
from smartcache.tasks.reduce.avro import AvroReader
from smartcache.tasks.reduce.readers import list_partitions
from smartcache.tasks.reduce.report import REDUCE_COLUMNS, ReadReport, projected_schema

DAY = dt.date(2026, 3, 2)


def _read(path, columns, columnar: bool, batch_size: int = 65536):
    schema = projected_schema(columns)
    rep = ReadReport(str(path), "avro")
    with open(path, "rb") as fo:
        reader = AvroReader(fo, schema, rep, batch_size, columnar=columnar)
        batches = list(reader)
    rep.finish()
    return pa.Table.from_batches(batches, schema=schema), rep, reader.plan is not None


def assert_same(path, columns=REDUCE_COLUMNS, batch_size: int = 65536, fast: bool = True):
    """Both decoders give equal tables and equal reports; ``fast``: the column-wise one was used."""
    a, ra, used = _read(path, columns, True, batch_size)
    b, rb, _ = _read(path, columns, False, batch_size)
    assert used == fast
    assert ra.to_dict() == rb.to_dict()
    assert a.schema.equals(b.schema) and a.equals(b), [c for c in a.column_names if not a[c].equals(b[c])]
    return a, ra


@pytest.fixture(scope="module")
def recs():
    rows = make_records(DAY, 700, seed=3)
    rows[5]["FileName"] = "/store/user/émile/ünïcode-fïlé-名前.root"      # multi-byte UTF-8
    rows[6].update({k: None for k in rows[6] if k not in ("FileName", "SiteName", "Type")})
    rows[7]["WrapCPU"] = -0.0
    rows[8]["UserId"] = -(2**62)
    rows[9]["JobId"] = ""
    return rows


@pytest.mark.parametrize("codec", ["deflate", "null"])
@pytest.mark.parametrize("columns", [REDUCE_COLUMNS, None, ("FileSize",), ("SiteName", "FileName")])
def test_clean_files_decode_identically(tmp_path, recs, codec, columns):
    path = write_avro(tmp_path / "p.avro", recs, codec=codec)
    table, rep = assert_same(path, columns)
    assert rep.ok and table.num_rows == len(recs)
    assert_same(path, columns, batch_size=97)


def test_generated_partitions_with_every_damage_kind(tmp_path):
    generate = pytest.importorskip("smartcache.tasks.generate.task")
    gen = generate.generate_logs(tmp_path / "raw", start="2026-03-01", days=12, scale=0.1, seed=7, corrupt=12,
                                 workers=1)
    assert {c.kind for c in gen.corrupt} == {"truncated", "corrupt_bytes", "schema_drift", "empty"}
    for src in list_partitions(tmp_path / "raw"):
        if not src.endswith("day=1/part-00000.avro") and not any(src.endswith(c.path) for c in gen.corrupt):
            continue
        if any(src.endswith(c.path) and c.kind == "empty" for c in gen.corrupt):
            continue                                     # no header: neither decoder runs
        for columns in (REDUCE_COLUMNS, None):
            assert_same(src, columns)


def _schema(fields: list[tuple[str, object]]) -> dict:
    return {"type": "record", "name": "Odd", "fields": [{"name": n, "type": t} for n, t in fields]}


def test_other_primitive_types_and_unions_coerce_like_fastavro(tmp_path, recs):
    fields = [("FileName", "bytes"), ("SiteName", ["string", "null"]), ("Type", "string"),
              ("SuccessFlag", ["null", "boolean"]), ("FileSize", ["null", "string"]), ("UserId", ["null", "int"]),
              ("TaskId", "long"), ("WrapCPU", ["null", "float"]), ("WrapWC", ["null", "long"]),
              ("JobId", ["null", "long"]), ("NCores", "null"), ("Extra", ["null", "double", "string"]),
              ("Flag", "boolean"), ("Blob", ["bytes", "null"]), ("Ratio", "float")]
    rows = []
    for i, r in enumerate(recs[:300]):
        rows.append({"FileName": r["FileName"].encode(), "SiteName": r["SiteName"], "Type": r["Type"],
                     "SuccessFlag": None if i % 11 == 0 else bool(r["SuccessFlag"]),
                     "FileSize": None if r["FileSize"] is None else ("n/a" if i % 50 == 7 else str(r["FileSize"])),
                     "UserId": None if i % 17 == 0 else i % 8 - 4, "TaskId": r["TaskId"] or 0, "WrapCPU": (r["WrapCPU"] or 0) / 3,
                     "WrapWC": None if i % 13 == 0 else int(r["WrapWC"] or 0) * 10**12,
                     "JobId": i, "NCores": None, "Extra": [None, 1.5, "x"][i % 3], "Flag": i % 2 == 0,
                     "Blob": None if i % 3 else b"\x00\xff", "Ratio": i / 7})
    path = tmp_path / "odd.avro"
    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(_schema(fields)), rows, codec="deflate", sync_interval=2000)
    columns = ("FileName", "SiteName", "Type", "SuccessFlag", "FileSize", "UserId", "TaskId", "WrapCPU",
               "WrapWC", "JobId", "NCores")
    table, rep = assert_same(path, columns)
    assert rep.dropped_by == {"bad_type:FileSize": 6} and rep.coerced
    assert table["SuccessFlag"].null_count == 28 and table["NCores"].null_count == table.num_rows


def test_schemas_outside_the_fast_path_fall_back_to_fastavro(tmp_path, recs):
    fields = [("FileName", "string"), ("SiteName", "string"), ("Type", "string"),
              ("Tags", {"type": "array", "items": "string"}),
              ("FinishedTimeStamp", {"type": "long", "logicalType": "timestamp-millis"})]
    rows = [{"FileName": r["FileName"], "SiteName": r["SiteName"], "Type": r["Type"], "Tags": ["a", "b"],
             "FinishedTimeStamp": dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)}
            for r in recs[10:60]]
    path = tmp_path / "nested.avro"
    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(_schema(fields)), rows)
    table, rep = assert_same(path, ("FileName", "SiteName", "Type"), fast=False)
    assert table.num_rows == 50 and rep.ok
    assert avro_columns.plan_for(_schema(fields[:3]), ["FileName"]) is not None
    assert avro_columns.plan_for(_schema([("a", ["null", "string", "long"])]), ["a"]) is None
    assert avro_columns.plan_for(_schema([("a", "null")]), ["a"]) is None          # zero-byte records


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_fuzzed_blocks_fail_exactly_where_fastavro_fails(tmp_path, recs, codec):
    """Flipped bytes inside blocks: the same blocks survive, the same values come out."""
    clean = write_avro(tmp_path / "clean.avro", recs, codec=codec, sync_interval=3000)
    header_len, blocks, _ = avro_blocks(clean)
    data = clean.read_bytes()
    rng = random.Random(17)
    for trial in range(60):
        buf = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 4])):
            start, _, end = rng.choice(blocks)
            at = rng.randrange(start + 3, end - 16)        # inside the block data: framing stays intact
            buf[at] = rng.choice([buf[at] ^ (1 << rng.randrange(8)), rng.randrange(256), 0x80, 0xFF, 0xC3])
        path = tmp_path / f"fuzz{trial}.avro"
        path.write_bytes(bytes(buf))
        assert_same(path, None)
        assert_same(path, REDUCE_COLUMNS)


def test_reduce_output_is_bit_identical_with_either_decoder(tmp_path, monkeypatch):
    generate = pytest.importorskip("smartcache.tasks.generate.task")
    from smartcache.tasks.reduce import aggregate
    from smartcache.tasks.reduce.task import reduce_partitions
    generate.generate_logs(tmp_path / "raw", start="2026-03-01", days=2, scale=0.5, seed=3, workers=1)
    monkeypatch.setattr(aggregate.Aggregator.__init__, "__defaults__", (997, 3000))    # many slices, spilled
    sources = list_partitions(tmp_path / "raw")
    paths = {}
    for decoder in ("columnar", "fastavro"):
        monkeypatch.setenv("SMARTCACHE_AVRO_DECODER", decoder)
        res = reduce_partitions(sources, tmp_path / decoder, None, None, use_manifest=False)
        paths[decoder] = [p.path.read_bytes() for p in res.partitions]
    assert paths["columnar"] == paths["fastavro"]
