"""Reading a feature table (Parquet, local path or file:// URI): its rows as the model's input matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from smartcache.catalog.errors import Invalid
from smartcache.tasks.common.io import local_path as _local_path

DAY_COLUMN = "day"


def local_path(uri: str) -> Path:
    return _local_path(uri, "feature table")


def open_table(uri: str) -> ds.Dataset:
    path = local_path(uri)
    if not path.exists():
        raise Invalid(f"feature table not found: {path}")
    try:
        return ds.dataset(str(path), format="parquet")
    except (pa.ArrowInvalid, OSError) as e:
        raise Invalid(f"feature table {path} is not readable Parquet: {e}") from e


def day_numbers(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Day numbers (days since the epoch) of a date32/date64/timestamp/integer day column."""
    t = col.type
    if pa.types.is_date32(t):
        return col.cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int32)
    if pa.types.is_date64(t) or pa.types.is_timestamp(t):
        return pc.cast(col, pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int32)
    if pa.types.is_integer(t):
        return col.to_numpy(zero_copy_only=False).astype(np.int32)
    raise Invalid(f"column {DAY_COLUMN!r} must be a date or a day number, not {t}")


def feature_matrix(table: pa.Table, features: Sequence[str]) -> np.ndarray:
    """The float32 ``[n, F]`` input matrix in ``features`` order; nulls and NaN become 0."""
    missing = [f for f in features if f not in table.column_names]
    if missing:
        raise Invalid(f"feature table lacks model input column(s): {', '.join(missing)}")
    x = np.empty((table.num_rows, len(features)), np.float32)
    for j, f in enumerate(features):
        col = table.column(f)
        if pa.types.is_boolean(col.type):
            col = col.cast(pa.int8())
        x[:, j] = col.fill_null(0).to_numpy(zero_copy_only=False)
    np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return x
