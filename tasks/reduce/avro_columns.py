"""Column-wise decoding of Avro blocks into Arrow arrays (the fast path of ``avro.AvroReader``).

fastavro decodes a record at a time into Python dicts (~40 us for a 38-field raw record); here a
group of blocks is inflated, walked by one compiled kernel (``avro_kernels``) that scatters each
wanted field into flat buffers, and the buffers become Arrow arrays without a Python object per
value. It covers writer schemas whose fields are primitives or unions of primitives (every CMS
popularity schema, the project's raw schema and its drifted variants) in ``null`` or ``deflate``
containers; anything else (nested records, arrays, maps, enums, fixed, logical types, other codecs)
returns no plan and the reader uses fastavro for that file.

The output is the one the fastavro path gives: a value whose Avro type is not the column's Arrow
type goes through the same safe coercion (``report.column_array``), value by value, and a block
fails exactly when fastavro would raise on it (see ``avro_kernels``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa

from smartcache.tasks.reduce import avro_kernels as k
from smartcache.tasks.reduce.report import ReadReport, column_array

try:  # ISA-L inflates raw deflate ~2-3x faster than zlib, with the same output and the same errors
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - isal is a declared dependency
    _inflate = zlib

CODECS = ("null", "deflate")
_NATURAL = {k.BOOLEAN: pa.bool_(), k.INT: pa.int32(), k.LONG: pa.int64(), k.FLOAT: pa.float64(),
            k.DOUBLE: pa.float64(), k.BYTES: pa.binary(), k.STRING: pa.string()}
_MIN_BYTES = {k.NULL: 0, k.BOOLEAN: 1, k.INT: 1, k.LONG: 1, k.FLOAT: 4, k.DOUBLE: 8, k.BYTES: 1, k.STRING: 1}
_KIND = {k.BOOLEAN: "bools", k.INT: "ints", k.LONG: "ints", k.FLOAT: "fbytes", k.DOUBLE: "fbytes",
         k.BYTES: "strs", k.STRING: "strs"}


@dataclass(frozen=True)
class Column:
    name: str
    code: int          # the field's one non-null Avro type (NULL: the field is always null)
    out: int           # row in the validity matrix
    slot: int          # row in the value buffer of its kind


@dataclass(frozen=True)
class Plan:
    """How to walk one writer schema's records and which fields to keep."""

    branches: np.ndarray           # int8 [fields, max branches]: type codes
    nbr: np.ndarray                # int8 [fields]: union branch count, 0 = plain type
    slot: np.ndarray               # int32 [fields]: value slot of a wanted field, else -1
    out: np.ndarray                # int32 [fields]: validity row of a wanted field, else -1
    vcode: np.ndarray              # int8 [fields]: the type of a wanted field's values
    columns: dict[str, Column]
    sizes: dict[str, int]          # slots per value kind
    min_bytes: int                 # smallest possible encoded record


def _code(t: object) -> int | None:
    if isinstance(t, str):
        return k.CODES.get(t)
    if isinstance(t, dict) and set(t) <= {"type"} | {"avro.java.string"} and isinstance(t.get("type"), str):
        return k.CODES.get(t["type"])          # {"type": "long"} is "long"; a logicalType is not
    return None


def plan_for(writer_schema: dict, wanted: Sequence[str]) -> Plan | None:
    """A decoding plan for ``writer_schema`` keeping the ``wanted`` fields; None if not covered."""
    fields = writer_schema.get("fields")
    if not isinstance(fields, list) or not fields:
        return None
    rows, nbr, slot, out, vcode = [], [], [], [], []
    columns: dict[str, Column] = {}
    sizes = {"ints": 0, "fbytes": 0, "bools": 0, "strs": 0}
    min_bytes = 0
    for f in fields:
        if not isinstance(f, dict):
            return None
        t = f.get("type")
        union = isinstance(t, list)
        codes = [_code(b) for b in t] if union else [_code(t)]
        if not codes or any(c is None for c in codes) or len(set(codes)) != len(codes):
            return None
        rows.append(codes)
        nbr.append(len(codes) if union else 0)
        min_bytes += 1 if union else _MIN_BYTES[codes[0]]
        name = f.get("name")
        if name in wanted and name not in columns:
            real = [c for c in codes if c != k.NULL]
            if len(real) > 1:
                return None                    # a value of several types: fastavro's job
            code = real[0] if real else k.NULL
            kind = _KIND.get(code)
            s = -1
            if kind is not None:
                s = sizes[kind]
                sizes[kind] += 1
            columns[name] = Column(name, code, len(columns), s)
            slot.append(s)
            out.append(columns[name].out)
            vcode.append(code)
        else:
            slot.append(-1)
            out.append(-1)
            vcode.append(k.NULL)
    if min_bytes == 0:
        return None                            # records of zero bytes: counts cannot be bounded
    width = max(len(r) for r in rows)
    branches = np.full((len(rows), width), -1, dtype=np.int8)
    for i, r in enumerate(rows):
        branches[i, :len(r)] = r
    return Plan(branches, np.array(nbr, np.int8), np.array(slot, np.int32), np.array(out, np.int32),
                np.array(vcode, np.int8), columns, sizes, min_bytes)


def inflate(codec: str, data: bytes) -> bytes | None:
    """A block's records, as fastavro reads them (raw deflate, trailing bytes ignored); None if damaged."""
    if codec == "null":
        return data
    try:
        return _inflate.decompressobj(-15).decompress(data)
    except _inflate.error:
        return None


class Decoded:
    """Natural Arrow arrays of one group of blocks (failed blocks' rows left out) and per-block status."""

    def __init__(self, arrays: dict[str, pa.Array], n: int, status: np.ndarray):
        self.arrays, self.n, self.status = arrays, n, status


def decode_group(plan: Plan, codec: str, blocks: Sequence[tuple[int, bytes]]) -> Decoded:
    """Decode ``(record count, block data)`` pairs of one container into arrays of the wanted fields."""
    status = np.zeros(len(blocks), dtype=np.int8)
    data, counts = [], np.zeros(len(blocks), dtype=np.int64)
    for i, (count, raw) in enumerate(blocks):
        d = inflate(codec, raw)
        if d is None or count * plan.min_bytes > len(d):
            status[i] = k.IMPLAUSIBLE          # does not inflate, or cannot hold that many records
            d = b""
        else:
            counts[i] = count
        data.append(d)
    lens = np.fromiter((len(d) for d in data), dtype=np.int64, count=len(data))
    ends = np.cumsum(lens)
    starts = ends - lens
    cap = int(counts.sum())
    buf = np.frombuffer(b"".join(data), dtype=np.uint8)
    sz = plan.sizes
    ints = np.empty((sz["ints"], cap), dtype=np.int64)
    fbytes = np.empty((sz["fbytes"], cap, 8), dtype=np.uint8)
    bools = np.empty((sz["bools"], cap), dtype=np.uint8)
    soff = np.empty((sz["strs"], cap + 1), dtype=np.int64)
    # one row per string column, each as long as all the text: only the pages written become resident
    sdata = np.empty((sz["strs"], len(buf)), dtype=np.uint8)
    valid = np.empty((len(plan.columns), cap), dtype=np.uint8)
    n = k.decode_blocks(buf, starts, ends, counts, plan.branches, plan.nbr, plan.slot, plan.out, plan.vcode,
                        ints, fbytes, bools, soff, sdata, valid, status)
    bufs = {"ints": ints, "fbytes": fbytes, "bools": bools, "soff": soff, "sdata": sdata}
    arrays = {c.name: _array(c, valid[c.out, :n], bufs, n) for c in plan.columns.values()}
    return Decoded(arrays, n, status)


def _array(c: Column, v: np.ndarray, bufs: dict[str, np.ndarray], n: int) -> pa.Array:
    if c.code == k.NULL:
        return pa.nulls(n)
    nulls = v == 0
    mask = nulls if nulls.any() else None
    if c.code in (k.INT, k.LONG):
        vals = bufs["ints"][c.slot, :n]
        if c.code == k.INT and n and (vals.min() < -2**31 or vals.max() >= 2**31):
            return pa.array(vals, mask=mask)   # no int32: the coercion path decides, as for fastavro
        return pa.array(vals.astype(np.int32) if c.code == k.INT else vals, mask=mask)
    if c.code == k.DOUBLE:
        return pa.array(bufs["fbytes"][c.slot, :n].reshape(-1).view("<f8"), mask=mask)
    if c.code == k.FLOAT:
        raw = np.ascontiguousarray(bufs["fbytes"][c.slot, :n, :4])
        return pa.array(raw.reshape(-1).view("<f4").astype(np.float64), mask=mask)
    if c.code == k.BOOLEAN:
        return pa.array(bufs["bools"][c.slot, :n].view(bool), mask=mask)
    offsets = bufs["soff"][c.slot, :n + 1]
    data = bufs["sdata"][c.slot, :int(offsets[-1])]
    bitmap = None if mask is None else pa.py_buffer(np.packbits(v, bitorder="little"))
    typ = pa.string() if c.code == k.STRING else pa.binary()
    if offsets[-1] >= 2**31:
        typ = pa.large_string() if c.code == k.STRING else pa.large_binary()
    else:
        offsets = offsets.astype(np.int32)
    return pa.Array.from_buffers(typ, n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)])


def batch_from_arrays(arrays: dict[str, pa.Array], n: int, schema: pa.Schema,
                      report: ReadReport) -> pa.RecordBatch:
    """Arrays of the writer's types -> one RecordBatch of ``schema`` (absent columns are null), with
    ``report.columns_to_batch``'s rules: a value of another type is coerced if that loses nothing,
    else its row is dropped and counted."""
    out, why = [], {}
    for f in schema:
        arr = arrays.get(f.name)
        if arr is None or pa.types.is_null(arr.type):
            out.append(pa.nulls(n, f.type))
            continue
        if arr.type == f.type:
            out.append(arr)
            continue
        conv, bad, changed = column_array(arr.to_pylist(), f.type)
        out.append(conv)
        if changed:
            report.coerced[f.name] = report.coerced.get(f.name, 0) + changed
        for i in bad:
            why.setdefault(i, f"bad_type:{f.name}")
    batch = pa.RecordBatch.from_arrays(out, schema=schema)
    if why:
        for reason in why.values():
            report.drop(reason)
        keep = np.ones(n, dtype=bool)
        keep[list(why)] = False
        batch = batch.filter(pa.array(keep))
    return batch


__all__ = ["CODECS", "Decoded", "Plan", "batch_from_arrays", "decode_group", "inflate", "plan_for"]
