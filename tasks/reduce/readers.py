"""Read raw access-log partitions (Avro or JSON-lines, local or any fsspec URL) robustly.

``read_partition(source)`` yields Arrow RecordBatches of the raw schema, projected to the columns
asked for (by default those the reduce needs), in bounded memory. Damage never raises: the reader
keeps what it can decode and fills a :class:`ReadReport` (records read, dropped and lost, whether
the loss is exact, an estimate or a lower bound, and why). Only a source that cannot be opened at
all (missing, unknown format) raises :class:`SourceError`.

Damage kinds: ``empty``, ``bad_header``, ``truncated_avro``, ``bad_sync``, ``corrupt_block``,
``bad_gzip``, ``truncated_gzip``, ``bad_json``, ``schema_drift`` (a required field missing or
renamed: the records are counted as dropped; a value of the wrong type: coerced when that loses
nothing, such as ``"123"`` for a long, else the record is dropped and counted).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import fsspec
import pyarrow as pa

from smartcache.tasks.common.schema import PARTITION_GLOB
from smartcache.tasks.reduce.avro import MAGIC, AvroReader
from smartcache.tasks.reduce.jsonl import JsonReader
from smartcache.tasks.reduce.report import (
    DEFAULT_BATCH,
    EMPTY,
    EXACT,
    LOWER_BOUND,
    MISSING_RECORDS,
    REDUCE_COLUMNS,
    REQUIRED_FIELDS,
    Damage,
    ReadReport,
    SourceError,
    projected_schema,
)

__all__ = ["DEFAULT_BATCH", "Damage", "PartitionRead", "REDUCE_COLUMNS", "REQUIRED_FIELDS", "ReadReport",
           "SourceError", "detect_format", "list_partitions", "partition_day", "read_partition", "read_table"]

_DAY_RE = re.compile(r"year=(\d{4})/month=(\d{1,2})/day=(\d{1,2})(?:/|$)")
_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_PART_RE = re.compile(r"part-(\d+)")
GZIP_MAGIC = b"\x1f\x8b"


def detect_format(source: str, head: bytes = b"") -> tuple[str, bool]:
    """(format, gzipped) from the name, else from the first bytes: ('avro', False) or ('json', gz)."""
    name = source.lower().rsplit("?", 1)[0]
    if name.endswith(".avro"):
        return "avro", False
    for ext in (".json", ".jsonl", ".ndjson"):
        if name.endswith(ext):
            return "json", False
        if name.endswith(ext + ".gz"):
            return "json", True
    if head.startswith(MAGIC):
        return "avro", False
    if head.startswith(GZIP_MAGIC):
        return "json", True
    if head.lstrip()[:1] in (b"{", b""):
        return "json", False
    raise SourceError(f"{source}: cannot tell the format (expected .avro, .json[.gz] or .jsonl[.gz])")


def partition_day(source: str) -> dt.date | None:
    """The day of a partition from its path (``year=/month=/day=``, else a ``YYYY-MM-DD`` in the name)."""
    m = _DAY_RE.search(source)
    if m is None:
        m = _DATE_RE.search(source.rsplit("/", 1)[-1])
    if m is None:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def partition_part(source: str) -> int:
    m = _PART_RE.search(source.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else 0


class PartitionRead:
    """An iterable of RecordBatches from one source; ``report`` is complete once iteration ends."""

    def __init__(self, source: str, columns: Sequence[str] | None = REDUCE_COLUMNS,
                 batch_size: int = DEFAULT_BATCH, expected_records: int | None = None,
                 use_threads: bool = True, inflate: str | None = None):
        if batch_size <= 0:
            raise SourceError("batch size must be positive")
        self.source = source
        self.schema = projected_schema(columns)
        self.batch_size, self.expected, self.use_threads = batch_size, expected_records, use_threads
        self.inflate = inflate
        self.fs, self.path = _resolve(source)
        try:
            size = self.fs.size(self.path)
        except FileNotFoundError as e:
            raise SourceError(f"{source}: no such file") from e
        except OSError as e:
            raise SourceError(f"{source}: cannot stat: {e}") from e
        self.report = ReadReport(source=source, fmt="?", n_bytes=size)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._batches()
        finally:
            self._finish()

    def _batches(self) -> Iterator[pa.RecordBatch]:
        r = self.report
        try:
            fo = self.fs.open(self.path, "rb")
        except OSError as e:
            raise SourceError(f"{self.source}: cannot open: {e}") from e
        with fo:
            head = fo.read(4)
            fmt, gz = detect_format(self.source, head)
            r.fmt = fmt + (".gz" if gz else "")
            if not head:
                r.add(EMPTY, "zero-byte file", 0)
                r.lose(0, LOWER_BOUND)
                return
            fo.seek(0)
            if fmt == "avro":
                reader = AvroReader(fo, self.schema, r, self.batch_size)
            else:
                reader = JsonReader(fo, self.schema, r, self.batch_size, gz, self.use_threads, self.inflate)
            yield from reader

    def _finish(self) -> None:
        r = self.report
        r.finish()
        if self.expected is not None:
            # a manifest count turns any estimate into an exact figure
            got = r.records_read + r.records_dropped
            r.records_lost = max(self.expected - got, 0)
            r.lost_kind = EXACT
            if r.ok and got < self.expected:   # e.g. an Avro file cut exactly at a block boundary
                r.add(MISSING_RECORDS, f"{got} records where the manifest lists {self.expected}")


def read_partition(source: str, columns: Sequence[str] | None = REDUCE_COLUMNS, batch_size: int = DEFAULT_BATCH,
                   expected_records: int | None = None, use_threads: bool = True,
                   inflate: str | None = None) -> PartitionRead:
    """Open ``source`` (a path or fsspec URL) for reading; iterate the result for RecordBatches.

    ``columns=None`` reads every raw field. ``expected_records`` (e.g. from a manifest) makes the
    lost-record count exact. ``inflate`` picks the gzip backend ('isal' or 'zlib'; default the fastest).
    """
    return PartitionRead(source, columns, batch_size, expected_records, use_threads, inflate)


def read_table(source: str, columns: Sequence[str] | None = REDUCE_COLUMNS, **kwargs) -> tuple[pa.Table, ReadReport]:
    """The whole partition as one Table (for tests and small data), and its report."""
    part = read_partition(source, columns, **kwargs)
    batches = list(part)
    return pa.Table.from_batches(batches, schema=part.schema), part.report


def list_partitions(root: str | Path, days: Iterable[dt.date] | None = None) -> list[str]:
    """Partition files under ``root`` (``year=/month=/day=/part-*``), optionally only on ``days``; sorted."""
    root = str(root)
    fs, base = _resolve(root)
    base = base.rstrip("/")
    if days is None:
        patterns = [f"{base}/{PARTITION_GLOB}"]
    else:
        patterns = [f"{base}/year={d.year}/month={d.month}/day={d.day}/part-*" for d in sorted(set(days))]
    found: list[str] = []
    for pattern in patterns:
        found.extend(p for p in fs.glob(pattern) if not p.rsplit("/", 1)[-1].startswith((".", "_")))
    proto = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    if proto in ("file", "local"):
        return sorted(found)
    return sorted(fs.unstrip_protocol(p) for p in found)


def _resolve(source: str) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as e:
        raise SourceError(f"{source}: no filesystem for this URL: {e}") from e
