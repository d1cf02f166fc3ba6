"""What the raw-log readers share: the read report, damage kinds, projection and safe type coercion.

The readers never raise on bad *content*: they keep what they can decode and describe the rest in a
:class:`ReadReport` (what was read, what was lost and whether that number is exact, an estimate or
only a lower bound, and why).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pyarrow as pa

from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.common.schema import RAW_ARROW_SCHEMA

# Damage kinds a report can carry.
EMPTY = "empty"                        # zero-byte file
BAD_HEADER = "bad_header"              # not an Avro container / unreadable header
TRUNCATED_AVRO = "truncated_avro"      # file ends inside a block (or the header)
BAD_SYNC = "bad_sync"                  # block framing broken: sync marker or block header damaged
CORRUPT_BLOCK = "corrupt_block"        # framing fine but the block does not decode
BAD_GZIP = "bad_gzip"                  # gzip header or deflate stream damaged
TRUNCATED_GZIP = "truncated_gzip"      # gzip stream ends before its end marker
BAD_JSON = "bad_json"                  # lines that are not a JSON object
SCHEMA_DRIFT = "schema_drift"          # required field missing/renamed, or a value of the wrong type
MISSING_RECORDS = "missing_records"    # reads clean, but fewer records than its manifest lists

# How to read ``records_lost``.
EXACT, ESTIMATE, LOWER_BOUND = "exact", "estimate", "lower_bound"

# Fields without which a record cannot be reduced; any other projected field may be null or absent.
REQUIRED_FIELDS = ("FileName", "SiteName", "Type")

# Columns the reduce needs (the default projection).
REDUCE_COLUMNS = ("FileName", "InputCollection", "SiteName", "Type", "SuccessFlag", "JobExecExitCode",
                  "FileSize", "JobId", "UserId", "TaskId", "WrapCPU", "WrapWC", "StartedRunningTimeStamp",
                  "FinishedTimeStamp", "JobExecExitTimeStamp", "ProtocolUsed")

DEFAULT_BATCH = 65536


class SourceError(SmartcacheError):
    """A source cannot be opened at all (missing, permission denied, unknown format)."""


@dataclass(frozen=True)
class Damage:
    kind: str
    detail: str
    offset: int | None = None          # byte offset (compressed stream) where it was found


@dataclass
class ReadReport:
    """What one partition read produced; complete once the reader's iterator is exhausted."""

    source: str
    fmt: str
    n_bytes: int | None = None
    records_read: int = 0              # records decoded and yielded
    records_dropped: int = 0           # decoded but unusable (wrong type, required field missing)
    records_lost: int = 0              # records inside damaged regions, never decoded
    lost_kind: str = EXACT             # EXACT | ESTIMATE | LOWER_BOUND
    damage: list[Damage] = field(default_factory=list)
    dropped_by: dict[str, int] = field(default_factory=dict)   # "bad_type:FileSize" -> n, "missing:FileName" -> n
    coerced: dict[str, int] = field(default_factory=dict)      # field -> values of another type converted
    missing_fields: tuple[str, ...] = ()      # projected fields the writer did not have
    unknown_fields: tuple[str, ...] = ()      # writer fields that are not in the raw schema

    @property
    def ok(self) -> bool:
        return not self.damage

    @property
    def partial(self) -> bool:
        """Damaged, but some records were read."""
        return bool(self.damage) and self.records_read > 0

    @property
    def unreadable(self) -> bool:
        return bool(self.damage) and self.records_read == 0

    @property
    def kinds(self) -> list[str]:
        return sorted({d.kind for d in self.damage})

    @property
    def reason(self) -> str:
        """One line for humans and the quarantine table."""
        if not self.damage:
            return "ok"
        parts = []
        for kind in self.kinds:
            first = next(d for d in self.damage if d.kind == kind)
            n = sum(1 for d in self.damage if d.kind == kind)
            parts.append(f"{kind}{f' x{n}' if n > 1 else ''}: {first.detail}")
        lost = f"{self.records_lost} records lost ({self.lost_kind.replace('_', ' ')})"
        if self.records_dropped:
            lost += f", {self.records_dropped} dropped"
        return "; ".join(parts) + f"; {lost}"

    def add(self, kind: str, detail: str, offset: int | None = None) -> None:
        self.damage.append(Damage(kind, detail, offset))

    def lose(self, n: int, kind: str = EXACT) -> None:
        """Count ``n`` more lost records; the total is only as exact as its least exact part."""
        self.records_lost += max(int(n), 0)
        order = (EXACT, LOWER_BOUND, ESTIMATE)
        if order.index(kind) > order.index(self.lost_kind):
            self.lost_kind = kind

    def drop(self, why: str, n: int = 1) -> None:
        self.records_dropped += n
        self.dropped_by[why] = self.dropped_by.get(why, 0) + n

    def finish(self) -> None:
        """Describe type drift that was repaired and unusable records as schema drift damage."""
        if SCHEMA_DRIFT in self.kinds:
            return
        if self.records_dropped:
            worst = max(self.dropped_by.items(), key=lambda kv: kv[1])
            self.add(SCHEMA_DRIFT, f"{self.records_dropped} records unusable (most: {worst[0]} x{worst[1]})")
        elif self.coerced:
            fields = ", ".join(f"{k} x{v}" for k, v in sorted(self.coerced.items()))
            self.add(SCHEMA_DRIFT, f"values of the wrong type converted without loss ({fields})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "format": self.fmt, "bytes": self.n_bytes,
            "records_read": self.records_read, "records_dropped": self.records_dropped,
            "records_lost": self.records_lost, "lost_kind": self.lost_kind,
            "partial": self.partial, "unreadable": self.unreadable, "reason": self.reason,
            "damage": [{"kind": d.kind, "detail": d.detail, "offset": d.offset} for d in self.damage],
            "dropped_by": dict(self.dropped_by), "coerced": dict(self.coerced),
            "missing_fields": list(self.missing_fields),
            "unknown_fields": list(self.unknown_fields),
        }


def projected_schema(columns: Sequence[str] | None) -> pa.Schema:
    """The raw Arrow schema cut to ``columns`` (in the order given); None = every field."""
    if columns is None:
        return RAW_ARROW_SCHEMA
    unknown = [c for c in columns if RAW_ARROW_SCHEMA.get_field_index(c) < 0]
    if unknown:
        raise SourceError(f"not raw record fields: {', '.join(unknown)}")
    return pa.schema([RAW_ARROW_SCHEMA.field(c) for c in columns])


# -- safe coercion ------------------------------------------------------------------------------
_BAD = object()


def _to_int(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if math.isfinite(v) and v.is_integer() else _BAD
    if isinstance(v, (str, bytes)):
        try:
            return int(v.strip())
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                return _BAD
            return int(f) if math.isfinite(f) and f.is_integer() else _BAD
    return _BAD


def _to_float(v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, (str, bytes)):
        try:
            return float(v)
        except ValueError:
            return _BAD
    return _BAD


def _to_str(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            return _BAD
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)         # an id written as a number: no information lost
    return _BAD


def _to_bool(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "0", "1"):
        return v.strip().lower() in ("true", "1")
    return _BAD


def coercer(t: pa.DataType) -> Callable[[Any], Any]:
    if pa.types.is_integer(t):
        return _to_int
    if pa.types.is_floating(t):
        return _to_float
    if pa.types.is_boolean(t):
        return _to_bool
    return _to_str


def column_array(values: list, t: pa.DataType) -> tuple[pa.Array, list[int], int]:
    """``values`` as an Arrow array of type ``t``, the indices of values that could not be coerced,
    and how many values were converted from another type."""
    with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return pa.array(values, type=t), [], 0      # the common case: every value has the type
    conv = coercer(t)
    lo, hi = (-2**31, 2**31) if pa.types.is_int32(t) else (-2**63, 2**63)
    check_range = pa.types.is_integer(t)
    out: list = []
    bad: list[int] = []
    changed = 0
    for i, v in enumerate(values):
        c = None if v is None else conv(v)
        if c is _BAD or (check_range and c is not None and not lo <= c < hi):
            bad.append(i)
            c = None
        elif c is not None and type(c) is not type(v) and not (isinstance(c, float) and type(v) is int):
            changed += 1                       # (an int where a double is due is no drift)
        out.append(c)
    return pa.array(out, type=t), bad, changed


def columns_to_batch(columns: dict[str, Sequence], n: int, schema: pa.Schema, report: ReadReport,
                     why: dict[int, str] | None = None) -> pa.RecordBatch:
    """Column value lists -> one RecordBatch of ``schema`` (absent columns are null).

    Rows whose value cannot be coerced to the column type, or listed in ``why``, are dropped and
    counted in the report under their reason.
    """
    why = dict(why or {})
    arrays = []
    for f in schema:
        values = columns.get(f.name)
        if values is None:
            arrays.append(pa.nulls(n, f.type))
            continue
        arr, bad, changed = column_array(values if isinstance(values, list) else list(values), f.type)
        arrays.append(arr)
        if changed:
            report.coerced[f.name] = report.coerced.get(f.name, 0) + changed
        for i in bad:
            why.setdefault(i, f"bad_type:{f.name}")
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    if why:
        for reason in why.values():
            report.drop(reason)
        keep = [True] * n
        for i in why:
            keep[i] = False
        batch = batch.filter(pa.array(keep))
    return batch


def rows_to_batch(rows: Sequence[dict], schema: pa.Schema, report: ReadReport) -> pa.RecordBatch:
    """Decoded records (dicts) -> one RecordBatch; a record lacking a required field is dropped."""
    why: dict[int, str] = {}
    for name in REQUIRED_FIELDS:
        if schema.get_field_index(name) >= 0:
            for i, r in enumerate(rows):
                if name not in r:
                    why.setdefault(i, f"missing:{name}")
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return columns_to_batch(columns, len(rows), schema, report, why)
