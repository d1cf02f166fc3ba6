"""Realistic damage for ``--corrupt K``: the ways raw partitions break in practice.

Kinds cycle in this order over the K partitions chosen (deterministically, from the seed):

- ``truncated``     the file is cut short: an Avro file mid-way through a data block, a gzip
                    stream before its end-of-stream marker (an interrupted copy).
- ``corrupt_bytes`` bytes flipped inside the file: in an Avro data block and its sync marker, or in
                    the middle of the deflate stream of a ``.json.gz`` (bad disk, bad transfer).
- ``schema_drift``  the producer changed the record layout: variant 0 ``FileSize`` written as a
                    string, 1 ``FileName`` renamed ``Filename``, 2 ``SiteName`` missing. An Avro file
                    is written whole with the drifted schema; JSON lines drift from the middle of the
                    day on (a producer upgraded at noon).
- ``empty``         a 0-byte file (a writer that died before flushing).
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

from smartcache.tasks.common.schema import RAW_AVRO_SCHEMA, RAW_FIELDS
from smartcache.tasks.generate.encode import Encoded, avro_file, json_lines

KINDS = ("truncated", "corrupt_bytes", "schema_drift", "empty")
DRIFTS = ("FileSize written as string", "FileName renamed to Filename", "SiteName missing")
TAG_CORRUPT = 401


def choose(seed: int, n_partitions: int, k: int) -> dict[int, tuple[str, int]]:
    """Partition index -> (kind, ordinal) for ``k`` distinct partitions, kinds cycling through KINDS."""
    order = np.random.default_rng([seed, TAG_CORRUPT, n_partitions]).permutation(n_partitions)[:k]
    return {int(idx): (KINDS[i % len(KINDS)], i // len(KINDS)) for i, idx in enumerate(order)}


def drifted(table: pa.Table, variant: int) -> tuple[pa.Table, list[tuple[str, str]]]:
    """The table and field list (name, Avro type) of a schema-drifted producer."""
    fields = [(n, t) for n, t, _ in RAW_FIELDS]
    v = variant % len(DRIFTS)
    if v == 0:
        table = table.set_column(table.schema.get_field_index("FileSize"), "FileSize",
                                 table.column("FileSize").cast(pa.string()))
        fields = [(n, "string" if n == "FileSize" else t) for n, t in fields]
    elif v == 1:
        table = table.rename_columns(["Filename" if n == "FileName" else n for n in table.column_names])
        fields = [("Filename" if n == "FileName" else n, t) for n, t in fields]
    else:
        table = table.drop_columns(["SiteName"])
        fields = [(n, t) for n, t in fields if n != "SiteName"]
    return table, fields


def _avro_schema(fields: list[tuple[str, str]]) -> dict:
    return dict(RAW_AVRO_SCHEMA, fields=[{"name": n, "type": ["null", t], "default": None} for n, t in fields])


def _flip(data: bytearray, at: int, n: int) -> None:
    for i in range(max(0, at), min(len(data), at + n)):
        data[i] ^= 0xFF


def damage_avro(enc: Encoded, table: pa.Table, kind: str, ordinal: int, sync: bytes, codec: str) -> tuple[bytes, str]:
    """Damaged bytes of an Avro partition and a one-line description."""
    data = enc.data
    blocks = list(enc.block_starts) + [len(data)]
    mid = max(0, (len(blocks) - 1) // 2)
    b0, b1 = (blocks[mid], blocks[mid + 1]) if len(blocks) > 1 else (enc.header_len // 2, enc.header_len)
    if kind == "truncated":
        cut = (b0 + b1) // 2
        return data[:cut], f"cut at byte {cut} of {len(data)}, inside data block {mid}"
    if kind == "corrupt_bytes":
        out = bytearray(data)
        _flip(out, (b0 + b1) // 2, 8)
        _flip(out, b1 - 16, 16)                    # the block's sync marker
        return bytes(out), f"bytes flipped in data block {mid} and its sync marker"
    if kind == "schema_drift":
        t, fields = drifted(table, ordinal)
        return avro_file(t, _avro_schema(fields), sync, codec=codec).data, DRIFTS[ordinal % len(DRIFTS)]
    return b"", "0-byte file"


def damage_json(enc: Encoded, table: pa.Table, kind: str, ordinal: int, level: int) -> tuple[bytes, str]:
    """Damaged bytes of a gzipped JSON-lines partition and a one-line description."""
    data = enc.data
    if kind == "truncated":
        cut = max(10, len(data) * 3 // 5)
        return data[:cut], f"gzip stream cut at byte {cut} of {len(data)}"
    if kind == "corrupt_bytes":
        out = bytearray(data)
        _flip(out, len(out) // 2, 16)
        return bytes(out), f"16 bytes flipped at byte {len(out) // 2} of the gzip stream"
    if kind == "schema_drift":
        half = table.num_rows // 2
        t, fields = drifted(table.slice(half), ordinal)
        text = json_lines(table.slice(0, half), [(n, ty) for n, ty, _ in RAW_FIELDS]) + json_lines(t, fields)
        comp = zlib.compressobj(level, zlib.DEFLATED, 31)
        detail = f"{DRIFTS[ordinal % len(DRIFTS)]} from line {half + 1}"
        return comp.compress(text) + comp.flush(), detail
    return b"", "0-byte file"
