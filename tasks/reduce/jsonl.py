"""Robust, streaming JSON-lines reader (plain or gzip, single- or multi-member).

The (decompressed) stream is cut into newline-aligned chunks of a few MB. Each chunk is parsed by
Arrow's JSON reader with the projected schema (fast, multithreaded); a chunk it rejects is split in
halves until the bad lines are isolated, and only those small pieces go through ``json.loads`` with
safe coercion. So a few bad lines cost a few re-parses, not a slow path for the whole file.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from types import ModuleType
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from smartcache.tasks.common.schema import RAW_ARROW_SCHEMA
from smartcache.tasks.reduce.report import (
    BAD_GZIP,
    BAD_JSON,
    ESTIMATE,
    EXACT,
    LOWER_BOUND,
    REQUIRED_FIELDS,
    SCHEMA_DRIFT,
    TRUNCATED_GZIP,
    ReadReport,
    rows_to_batch,
)

READ_BYTES = 1 << 20           # compressed bytes read at a time
OUT_STEP = 64 << 10            # decompressed bytes per zlib call: on damage at most this much output is lost
IN_STEP = 16 << 10             # compressed bytes fed to the decompressor at a time
CHUNK_BYTES = 16 << 20         # decompressed bytes parsed at a time
LEAF_BYTES = 64 << 10          # below this, a rejected piece is parsed line by line
ARROW_BLOCK = 4 << 20          # Arrow parses blocks of this size in parallel


def inflate_backends() -> dict[str, ModuleType]:
    """zlib-compatible inflaters available here, fastest first (ISA-L inflates ~3x faster than zlib)."""
    found: dict[str, ModuleType] = {}
    with contextlib.suppress(ImportError):   # optional: zlib below always works
        from isal import isal_zlib
        found["isal"] = isal_zlib
    found["zlib"] = zlib
    return found


class JsonReader:
    """Iterate RecordBatches of ``schema`` from one JSON-lines stream; ``report`` says what happened."""

    def __init__(self, fo: BinaryIO, schema: pa.Schema, report: ReadReport, batch_size: int,
                 gzipped: bool, use_threads: bool = True, inflate: str | None = None):
        backends = inflate_backends()
        self.zlib = backends[inflate] if inflate else next(iter(backends.values()))
        self.fo, self.schema, self.report = fo, schema, report
        self.batch_size, self.gzipped = batch_size, gzipped
        self.read_opts = pj.ReadOptions(use_threads=use_threads, block_size=ARROW_BLOCK)
        self.parse_opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        self.consumed = 0          # compressed bytes fed to the decompressor
        self.clean_end = True      # False when the stream ended in damage
        self.damaged_at: int | None = None   # compressed offset of mid-stream damage
        self.sampled = False
        self.slow_all = False      # the first record showed drift: parse every chunk line by line
        self.required = [f for f in REQUIRED_FIELDS if schema.get_field_index(f) >= 0]
        self.good_lines = self.good_line_bytes = 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        pieces: list[bytes] = []          # joined once per chunk: += on bytes would copy quadratically
        size = 0
        pending = b""
        for piece in self._decompressed():
            pieces.append(piece)
            size += len(piece)
            if size >= CHUNK_BYTES:
                pending = b"".join(pieces)
                cut = pending.rfind(b"\n") + 1
                if cut > 0:
                    yield from self._chunk(pending, cut)     # parsed in place: no copy of the chunk
                    pending = pending[cut:]
                pieces, size = [pending], len(pending)
        pending = b"".join(pieces)
        if pending and not pending.isspace():
            if self.clean_end:
                yield from self._chunk(pending)       # last line without a newline
            else:
                cut = pending.rfind(b"\n") + 1       # whole lines, then the cut-off last one
                if cut:
                    yield from self._chunk(pending[:cut])
                if pending[cut:] and not pending[cut:].isspace():
                    yield from self._tail(pending[cut:])
        if self.damaged_at is not None:
            self._estimate_rest()

    # -- bytes ----------------------------------------------------------------------------------
    def _decompressed(self) -> Iterator[bytes]:
        """Decompressed bytes, in small steps so that damage costs at most OUT_STEP bytes of output."""
        if not self.gzipped:
            while data := self.fo.read(READ_BYTES):
                self.consumed += len(data)
                yield data
            return
        z = self.zlib
        d = z.decompressobj(31)
        member_start = True
        while data := self.fo.read(READ_BYTES):
            view = memoryview(data)
            for at in range(0, len(data), IN_STEP):
                # small input steps: the decompressor's unconsumed tail (copied at every call) stays small
                piece = view[at:at + IN_STEP]
                base = self.consumed
                self.consumed += len(piece)
                pending = piece
                while pending:
                    if member_start and not bytes(pending).strip(b"\0"):
                        break                         # zero padding after the last member
                    try:
                        out = d.decompress(pending, OUT_STEP)
                    except z.error as e:
                        self._gzip_damage(str(e), base + len(piece) - len(pending))
                        return
                    member_start = False
                    if out:
                        yield out
                    if d.eof:
                        pending = d.unused_data       # another gzip member follows
                        d = z.decompressobj(31)
                        member_start = True
                    else:
                        pending = d.unconsumed_tail
        if not member_start:
            self.clean_end = False
            self.report.add(TRUNCATED_GZIP, f"gzip stream ends before its end marker (after {self.consumed} bytes)",
                            self.consumed)
            self.report.lose(0, LOWER_BOUND)       # what followed the cut is unknowable

    def _gzip_damage(self, message: str, at: int) -> None:
        self.clean_end = False
        self.damaged_at = at
        header = "incorrect header check" in message or "unknown compression method" in message
        what = "not gzip data" if header and at == 0 else "damaged gzip data"
        self.report.add(BAD_GZIP, f"{what} near byte {at}: {message}", at)

    def _estimate_rest(self) -> None:
        """Records in the compressed bytes after mid-stream damage, at the density seen before it."""
        r = self.report
        at = self.damaged_at or 0
        remaining = max((r.n_bytes or 0) - at, 0)
        seen = r.records_read + r.records_dropped + r.records_lost
        if at and seen:
            r.lose(max(1, round(remaining * seen / at)), ESTIMATE)
        else:
            r.lose(0, LOWER_BOUND)

    # -- parsing --------------------------------------------------------------------------------
    def _chunk(self, chunk: bytes, end: int | None = None) -> Iterator[pa.RecordBatch]:
        """Parse ``chunk[:end]`` (whole lines)."""
        end = len(chunk) if end is None else end
        if not self.sampled:
            self.sampled = True
            self.slow_all = self._drift_check(chunk[:min(end, 1 << 20)])
        if self.slow_all:
            yield from self._slow(chunk, 0, end)
            return
        buf = pa.py_buffer(chunk)
        for table in self._robust(chunk, buf, 0, end):
            for batch in table.to_batches(max_chunksize=self.batch_size):
                self.report.records_read += batch.num_rows
                yield batch

    def _robust(self, chunk: bytes, buf: pa.Buffer, a: int, b: int) -> Iterator[pa.Table]:
        try:
            table = pj.read_json(pa.BufferReader(buf.slice(a, b - a)), read_options=self.read_opts,
                                 parse_options=self.parse_opts)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            table = None
        if table is not None:
            if any(table[f].null_count for f in self.required):
                table = self._required_present(chunk[a:b], table)
            if table is not None:
                self.good_lines += table.num_rows       # for the typical line length (sizes garbage)
                self.good_line_bytes += b - a
                yield table
                return
        mid = chunk.find(b"\n", a + (b - a) // 2, b - 1) + 1
        if b - a <= LEAF_BYTES or mid <= a:
            yield from (pa.Table.from_batches([bt]) for bt in self._slow_batches(chunk, a, b))
            return
        yield from self._robust(chunk, buf, a, mid)
        yield from self._robust(chunk, buf, mid, b)

    def _required_present(self, piece: bytes, table: pa.Table) -> pa.Table | None:
        """Rows with a null required field: drop (as drift) those whose line lacks the key entirely.

        Arrow reads an absent key as null; a producer that renamed or removed a field mid-file shows
        up only this way. Returns None when rows cannot be matched to lines (then parse slowly).
        """
        lines = [ln for ln in piece.split(b"\n") if ln.strip()]
        if len(lines) != table.num_rows:
            return None
        null_any = None
        for f in self.required:
            m = table[f].is_null()
            null_any = m if null_any is None else pc.or_(null_any, m)
        keep = np.ones(table.num_rows, dtype=bool)
        for i in np.flatnonzero(null_any.to_numpy(zero_copy_only=False)):
            obj = json.loads(lines[i])
            absent = [f for f in self.required if f not in obj]
            if absent:
                keep[i] = False
                self.report.drop(f"missing:{absent[0]}")
        return table if keep.all() else table.filter(pa.array(keep))

    def _slow(self, chunk: bytes, a: int, b: int) -> Iterator[pa.RecordBatch]:
        for batch in self._slow_batches(chunk, a, b):
            self.report.records_read += batch.num_rows
            yield batch

    def _slow_batches(self, chunk: bytes, a: int, b: int) -> Iterator[pa.RecordBatch]:
        rows, good, bad, bad_bytes, good_bytes = [], 0, 0, 0, 0
        for line in chunk[a:b].split(b"\n"):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                rows.append(obj)
                good += 1
                good_bytes += len(line) + 1
            else:
                bad += 1
                bad_bytes += len(line) + 1
            if len(rows) >= self.batch_size:
                yield rows_to_batch(rows, self.schema, self.report)
                rows = []
        self.good_lines += good
        self.good_line_bytes += good_bytes
        if bad:
            self._lose_lines(bad, bad_bytes)
        if rows:
            yield rows_to_batch(rows, self.schema, self.report)

    def _lose_lines(self, bad: int, bad_bytes: int) -> None:
        """Unparseable lines: one record each, unless a line is far longer than a record (garbage
        that swallowed the newlines of many records): then estimate from the typical line length."""
        typical = self.good_line_bytes / self.good_lines if self.good_lines else None
        estimate = round(bad_bytes / typical) if typical else bad
        self.report.add(BAD_JSON, f"{bad} line(s) ({bad_bytes} bytes) are not JSON objects", None)
        if estimate > 2 * bad:
            self.report.lose(estimate, ESTIMATE)
        else:
            self.report.lose(bad, EXACT)

    def _tail(self, tail: bytes) -> Iterator[pa.RecordBatch]:
        """The unterminated end of a damaged stream: keep it if it is a whole record, else count it
        lost (as many records as its length holds, when damage made one long garbage line)."""
        try:
            obj = json.loads(tail)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and all(k in obj for k in REQUIRED_FIELDS):
            batch = rows_to_batch([obj], self.schema, self.report)
            self.report.records_read += batch.num_rows
            yield batch
            return
        typical = self.good_line_bytes / self.good_lines if self.good_lines else None
        if typical and len(tail) > 2 * typical:
            self.report.add(BAD_JSON, f"{len(tail)} bytes of garbage at the end of the stream", None)
            self.report.lose(round(len(tail) / typical), ESTIMATE)
        else:
            self.report.lose(1, LOWER_BOUND)

    def _drift_check(self, chunk: bytes) -> bool:
        """Look at the first record: fields missing, renamed or of another type? True = parse slowly."""
        end = chunk.find(b"\n")
        try:
            first = json.loads(chunk[:end] if end >= 0 else chunk)
        except ValueError:
            return False
        if not isinstance(first, dict):
            return False
        r = self.report
        r.missing_fields = tuple(f.name for f in self.schema if f.name not in first)
        r.unknown_fields = tuple(k for k in first if RAW_ARROW_SCHEMA.get_field_index(k) < 0)
        missing = [f for f in REQUIRED_FIELDS if f in r.missing_fields and self.schema.get_field_index(f) >= 0]
        if missing:
            r.add(SCHEMA_DRIFT, f"required field(s) {', '.join(missing)} missing"
                  + (f" (unknown fields: {', '.join(r.unknown_fields)})" if r.unknown_fields else ""))
            return True
        for f in self.schema:
            v = first.get(f.name)
            if v is not None and not _same_kind(v, f.type):
                return True                    # retyped field: coerce value by value
        return False


def _same_kind(v: object, t: pa.DataType) -> bool:
    if pa.types.is_integer(t):
        return isinstance(v, int) and not isinstance(v, bool)
    if pa.types.is_floating(t):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if pa.types.is_boolean(t):
        return isinstance(v, bool)
    return isinstance(v, str)
