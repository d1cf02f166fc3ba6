"""Robust, streaming Avro container reader.

The container is framed here (header, then blocks of ``count, size, data, sync``) so that damage is
found and bounded block by block. The records are decoded a group of good blocks at a time, column
by column into Arrow (``avro_columns``: a compiled block decoder, ~10x fastavro) when the writer
schema is made of primitive fields and the codec is null or deflate, else by fastavro (the header
followed by those blocks is again a valid container). A block whose framing breaks is skipped by
searching for the next sync marker; a block that frames but does not decode is dropped alone. Both
decoders keep and drop the same blocks and give the same table. Memory stays bounded by one group
of blocks (about ``batch_size`` records).
"""

from __future__ import annotations

import io
import json
import os
from operator import itemgetter
from typing import BinaryIO, Iterator

import fastavro
import pyarrow as pa

from smartcache.tasks.common.schema import RAW_ARROW_SCHEMA
from smartcache.tasks.reduce import avro_columns
from smartcache.tasks.reduce.report import (
    BAD_HEADER,
    BAD_SYNC,
    CORRUPT_BLOCK,
    ESTIMATE,
    EXACT,
    LOWER_BOUND,
    REQUIRED_FIELDS,
    SCHEMA_DRIFT,
    TRUNCATED_AVRO,
    ReadReport,
    columns_to_batch,
)

MAGIC = b"Obj\x01"
SYNC_SIZE = 16
MAX_BLOCK = 256 << 20          # a block header claiming more is taken as damage
GROUP_BYTES = 16 << 20         # decode at most this much encoded data at once
COLUMN_GROUP_BYTES = 4 << 20   # the column-wise decoder inflates a whole group at once: keep it small
DECODER_ENV = "SMARTCACHE_AVRO_DECODER"   # "fastavro": use fastavro even where the column-wise decoder applies


class _Short(Exception):
    """The stream ended inside an item."""


class _BadFrame(Exception):
    """Bytes that cannot be an Avro block header."""


class _Stream:
    """A forward reader over a binary file with a bounded buffer and a mark one can come back to."""

    def __init__(self, fo: BinaryIO, chunk: int = 1 << 20):
        self.fo, self.chunk = fo, chunk
        self.buf = bytearray()
        self.pos = 0           # read position within buf
        self.base = 0          # absolute offset of buf[0]
        self.mark = 0          # buf index that must be kept (start of the current frame)
        self.eof = False

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def set_mark(self) -> None:
        self.mark = self.pos

    def fill(self, n: int) -> bool:
        while len(self.buf) - self.pos < n and not self.eof:
            keep_from = min(self.pos, self.mark)
            if keep_from > (4 << 20):           # drop what is behind us and the mark
                del self.buf[:keep_from]
                self.base += keep_from
                self.pos -= keep_from
                self.mark -= keep_from
            data = self.fo.read(max(self.chunk, n - (len(self.buf) - self.pos)))
            if not data:
                self.eof = True
            else:
                self.buf += data
        return len(self.buf) - self.pos >= n

    def take(self, n: int) -> bytes:
        if not self.fill(n):
            raise _Short
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def varint(self) -> int:
        """One zig-zag encoded Avro long."""
        shift = result = 0
        for _ in range(10):
            if not self.fill(1):
                raise _Short
            b = self.buf[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return (result >> 1) ^ -(result & 1)
            shift += 7
        raise _BadFrame("varint longer than 10 bytes")

    def seek_mark(self, delta: int = 0) -> None:
        self.pos = self.mark + delta

    def find(self, pattern: bytes) -> bool:
        """Advance to just after the next occurrence of ``pattern``; False (at EOF) if there is none."""
        while True:
            i = self.buf.find(pattern, self.pos)
            if i >= 0:
                self.pos = i + len(pattern)
                return True
            self.pos = max(self.pos, len(self.buf) - len(pattern) + 1)
            self.mark = self.pos
            if not self.fill(len(self.buf) - self.pos + self.chunk):
                if self.eof:
                    self.pos = len(self.buf)
                    return False


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_header(s: _Stream) -> tuple[bytes, dict, bytes]:
    """(raw header bytes, metadata, sync marker); raises _Short or _BadFrame."""
    if s.take(4) != MAGIC:
        raise _BadFrame("not an Avro container (bad magic)")
    meta: dict[str, bytes] = {}
    while True:
        count = s.varint()
        if count == 0:
            break
        if count < 0:
            count = -count
            s.varint()                      # byte size of the map block, unused
        for _ in range(count):
            klen = s.varint()
            if not 0 <= klen < 4096:
                raise _BadFrame("bad metadata key length")
            key = s.take(klen).decode("utf-8", "replace")
            vlen = s.varint()
            if not 0 <= vlen < (64 << 20):
                raise _BadFrame("bad metadata value length")
            meta[key] = s.take(vlen)
    sync = s.take(SYNC_SIZE)
    return bytes(s.buf[:s.pos]), meta, sync


def _writer_schema(meta: dict) -> dict:
    try:
        schema = json.loads(meta["avro.schema"])
        fastavro.parse_schema(schema)
    except (KeyError, ValueError, TypeError, fastavro.schema.SchemaParseException) as e:
        raise _BadFrame(f"no usable writer schema: {e}") from e
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise _BadFrame("writer schema is not a record")
    return schema


def _check_drift(ws: dict, schema: pa.Schema, report: ReadReport) -> list[str]:
    """Compare the writer schema with the raw schema; returns the required fields it lacks."""
    names = [f.get("name") for f in ws.get("fields", [])]
    report.missing_fields = tuple(f.name for f in schema if f.name not in names)
    report.unknown_fields = tuple(n for n in names if RAW_ARROW_SCHEMA.get_field_index(n) < 0)
    return [f for f in REQUIRED_FIELDS if f in report.missing_fields and schema.get_field_index(f) >= 0]


class AvroReader:
    """Iterate RecordBatches of ``schema`` from one Avro container; ``report`` says what happened."""

    def __init__(self, fo: BinaryIO, schema: pa.Schema, report: ReadReport, batch_size: int,
                 columnar: bool | None = None):
        self.s = _Stream(fo)
        self.schema, self.report, self.batch_size = schema, report, batch_size
        if columnar is None:        # fastavro everywhere: the reference (benchmarks) and an escape hatch
            columnar = os.environ.get(DECODER_ENV, "columnar") != "fastavro"
        self.columnar = columnar
        self.plan: avro_columns.Plan | None = None
        self.codec = "null"
        self.good_records = 0
        self.good_bytes = 0
        self.skipped_bytes = 0      # bytes skipped while resynchronising (records there: estimated)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        r, s = self.report, self.s
        try:
            header, meta, sync = _read_header(s)
            ws = _writer_schema(meta)
        except _Short:
            r.add(TRUNCATED_AVRO, "file ends inside the Avro header", s.offset)
            return
        except (_BadFrame, UnicodeDecodeError) as e:
            r.add(BAD_HEADER, str(e), 0)
            return
        missing = _check_drift(ws, self.schema, r)
        present = [f.name for f in self.schema if f.name not in r.missing_fields]
        self.codec = meta.get("avro.codec", b"null").decode("ascii", "replace")
        if self.columnar and self.codec in avro_columns.CODECS:
            self.plan = avro_columns.plan_for(ws, present)
        if missing:
            r.add(SCHEMA_DRIFT, f"required field(s) {', '.join(missing)} missing from the writer schema"
                  + (f" (unknown fields: {', '.join(r.unknown_fields)})" if r.unknown_fields else ""))
        group: list[tuple[int, bytes, int]] = []
        g_records = g_bytes = 0
        for count, data, framed in self._frames(sync):
            if missing:                              # nothing usable: count, do not decode
                r.drop(f"missing:{missing[0]}", count)
                continue
            group.append((count, data, framed))
            g_records += count
            g_bytes += framed
            if g_records >= self.batch_size or g_bytes >= (COLUMN_GROUP_BYTES if self.plan else GROUP_BYTES):
                yield from self._decode(header, sync, group, present)
                group, g_records, g_bytes = [], 0, 0
        if group and not missing:
            yield from self._decode(header, sync, group, present)
        if self.skipped_bytes:
            r.lose(self._estimate(self.skipped_bytes), ESTIMATE)

    # -- framing ---------------------------------------------------------------------------------
    def _frames(self, sync: bytes) -> Iterator[tuple[int, bytes, int]]:
        """Yield (record count, block data, framed length) of every block that frames correctly."""
        s, r = self.s, self.report
        while True:
            s.set_mark()
            if not s.fill(1):
                return
            start = s.offset
            count = None
            try:
                count = s.varint()
                size = s.varint()
                if count < 0 or size < 0 or size > MAX_BLOCK:
                    raise _BadFrame(f"impossible block header (count {count}, size {size})")
                data = s.take(size)
                got = s.take(SYNC_SIZE)
            except _Short:
                s.seek_mark(1)
                if s.find(sync):     # blocks follow: a damaged size ran past them, the file is not cut
                    r.add(BAD_SYNC, f"damaged block header at byte {start}: size beyond the next block", start)
                    self.skipped_bytes += s.offset - start
                    continue
                r.add(TRUNCATED_AVRO, f"file ends inside a block at byte {start}", start)
                r.lose(count if count and count > 0 else 1, LOWER_BOUND)
                return
            except _BadFrame as e:
                r.add(BAD_SYNC, f"damaged block header at byte {start}: {e}", start)
                self._resync(sync, start)
                continue
            if got != sync:
                r.add(BAD_SYNC, f"sync marker mismatch after the block at byte {start}", start)
                if self._next_frame_ok(sync):
                    r.lose(count, EXACT)             # only this block's sync was hit
                else:
                    self._resync(sync, start)
                continue
            yield count, data, s.offset - start

    def _next_frame_ok(self, sync: bytes) -> bool:
        """Is there a well-formed block (or the end of file) right here? Position is left unchanged."""
        s = self.s
        here = s.offset                # absolute: filling may compact the buffer
        try:
            if not s.fill(1):
                return True
            count, size = s.varint(), s.varint()
            ok = count >= 0 and 0 <= size <= MAX_BLOCK and s.fill(size + SYNC_SIZE) and \
                bytes(s.buf[s.pos + size:s.pos + size + SYNC_SIZE]) == sync
        except (_Short, _BadFrame):
            ok = False
        s.pos = here - s.base
        return ok

    def _resync(self, sync: bytes, start: int) -> None:
        s = self.s
        s.seek_mark(1)
        found = s.find(sync)
        self.skipped_bytes += s.offset - start
        if not found:
            self.report.add(BAD_SYNC, f"no sync marker after byte {start}: rest of file skipped", start)

    def _estimate(self, nbytes: int) -> int:
        if self.good_records and self.good_bytes:
            return max(1, round(nbytes * self.good_records / self.good_bytes))
        return 1

    # -- decoding --------------------------------------------------------------------------------
    def _decode(self, header: bytes, sync: bytes, group: list[tuple[int, bytes, int]], present: list[str]
                ) -> Iterator[pa.RecordBatch]:
        if self.plan is not None:
            yield from self._decode_columns(group)
        else:
            yield from self._decode_fastavro(header, sync, group, present)

    def _decode_columns(self, group: list[tuple[int, bytes, int]]) -> Iterator[pa.RecordBatch]:
        dec = avro_columns.decode_group(self.plan, self.codec, [(c, d) for c, d, _ in group])
        for (count, _, framed), status in zip(group, dec.status):
            if status:
                self._corrupt(count)
            else:
                self.good_records += count
                self.good_bytes += framed
        for i in range(0, dec.n, self.batch_size):
            m = min(self.batch_size, dec.n - i)
            part = {name: a.slice(i, m) for name, a in dec.arrays.items()}
            batch = avro_columns.batch_from_arrays(part, m, self.schema, self.report)
            self.report.records_read += batch.num_rows
            yield batch

    def _corrupt(self, count: int) -> None:
        self.report.add(CORRUPT_BLOCK, f"block of {count} records does not decode", None)
        self.report.lose(count, EXACT)

    def _decode_fastavro(self, header: bytes, sync: bytes, group: list[tuple[int, bytes, int]],
                         present: list[str]) -> Iterator[pa.RecordBatch]:
        blocks = [zigzag(c) + zigzag(len(d)) + d + sync for c, d, _ in group]
        try:
            rows = self._decode_rows(header, blocks, present)
        except Exception:   # noqa: BLE001 - fastavro raises many types on bad data; isolate the block
            if len(group) == 1:
                self._corrupt(group[0][0])
                return
            for one in group:
                yield from self._decode_fastavro(header, sync, [one], present)
            return
        n = len(rows)
        self.good_records += n
        self.good_bytes += sum(f for _, _, f in group)
        cols = dict(zip(present, zip(*rows))) if n else {}
        for i in range(0, n, self.batch_size):
            part = {k: v[i:i + self.batch_size] for k, v in cols.items()}
            batch = columns_to_batch(part, min(self.batch_size, n - i), self.schema, self.report)
            self.report.records_read += batch.num_rows
            yield batch

    @staticmethod
    def _decode_rows(header: bytes, blocks: list[bytes], present: list[str]) -> list[tuple]:
        """One tuple of the ``present`` fields' values per record (far smaller than fastavro's dicts)."""
        rd = fastavro.reader(io.BytesIO(header + b"".join(blocks)))
        if not present:
            return [() for _ in rd]
        if len(present) == 1:
            name = present[0]
            return [(rec[name],) for rec in rd]
        get = itemgetter(*present)
        return [get(rec) for rec in rd]
