"""FEATURES (fan-in): reduced daily partitions -> one feature table with forward labels.

One row per (decision day d, site, file) for every file read at that site on day d (with
``--candidate-days K``: read there within the last K days), with past-only features of the
information available at the end of day d, and labels over days d+1 .. d+H:

- ``label``: the file is read again at this site within H days; ``future_reads``: how often.
- ``label_complete``: the horizon lies inside the data and has no missing day (a day whose reduced
  partition is absent); train only on rows where it is true.
- ``history_complete``: the 30-day look-back lies inside the data.

With ``requests`` (the default) the same reduced partitions also give the *request-level* training
table (:mod:`feat_request_table`): one row per read, its features as of that read, labels over the
``horizon`` days after it -- the rows a cache asks the model about, which the model trains on. It is
registered beside the daily table (kind ``request-features``, name ``<daily name>.requests``; the daily
table's metadata names it under ``requests``).

The model inputs are :data:`FEATURE_COLUMNS` (in order, float32), all computable from a plain trace
of ``(timestamp, site, lfn[, size])``: :func:`trace_features` builds the same table from such a
trace, and :func:`trace_feature_matrix` / :func:`request_features` give every single request its
features as of that request (past days plus today so far), for simulators and online scoring. Job-field
features (``users_7d``, ``tasks_7d``, ``cpu_7d``: 7-day sums of the daily distinct users/tasks
and CPU seconds) are extra columns, not model inputs. The dataset of a file is parsed from its LFN
(``feat_names``), which for CMS names is the same as the records' InputCollection.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from smartcache.catalog import SmartcacheError, Store, load_config, open_store
from smartcache.tasks.common.cms import TIERS
from smartcache.tasks.common.io import file_sha256, write_parquet
from smartcache.tasks.features.daily import (
    EXTRA_COLUMNS,
    FEATURE_COLUMNS,
    GAP_CAP,
    LABEL_COLUMNS,
    compute_features,
    site_code_map,
)
from smartcache.tasks.features.requests import request_features, timestamps_ms, trace_feature_matrix
from smartcache.tasks.reduce.readers import partition_day

__all__ = ["DEFAULT_HORIZON", "EXTRA_COLUMNS", "FEATURE_COLUMNS", "FEATURE_DEFAULTS", "FeaturesResult", "GAP_CAP",
           "LABEL_COLUMNS", "REQUESTS_KIND", "build_features", "compute_features", "events_from_reduced", "main",
           "read_meta", "request_features", "trace_events", "trace_feature_matrix", "trace_features"]

# Label horizon (days). A site cache of a few percent of its 6-month working set turns over within
# one to a few days, so the question is "read again within days", not weeks. Measured on 6 generated
# months (request-level model, time discount of 3 days, held-out days): horizons of 1, 3 and 7 days
# give byte hit ratios within a few per cent of each other at 1-10 % of the working set; 3 days was
# the best all-round (and is the discount's time constant: see tasks/train).
DEFAULT_HORIZON = 3
REQUESTS_KIND = "request-features"
TRACE_KIND = "trace"

# The model inputs of a file read at a site where nothing is known of it: its first read (request-level
# rows count the read being decided, so the counts are 1, not 0), no earlier day, a dataset first seen
# now. ``log_size`` here is only the shape of the entry: training records the median of its rows; ``tier_code`` and
# ``site_tier`` come from the names (inference/lfn.py). What /decide uses for a file it knows by LFN only.
FEATURE_DEFAULTS: dict[str, float] = {
    "file_acc_1d": 1.0, "file_acc_7d": 1.0, "file_acc_30d": 1.0, "file_days_7d": 1.0, "file_days_30d": 1.0,
    "ds_acc_1d": 1.0, "ds_acc_7d": 1.0, "ds_acc_30d": 1.0, "ds_files_1d": 1.0, "ds_days_30d": 1.0,
    "days_since_prev": float(GAP_CAP), "days_since_first": 0.0, "ds_age": 0.0, "log_size": 9.0,
    "tier_code": 0.0, "site_tier": 0.0,
}

_EVENT_COLS = ["day", "site", "lfn", "dataset", "tier", "size", "n_access", "n_users", "n_tasks", "cpu_s"]
META_KEY = b"smartcache.features"


class FeaturesError(SmartcacheError):
    """No usable reduced input, or invalid feature options."""


@dataclass(frozen=True)
class FeaturesResult:
    path: Path
    dataset: str
    n_rows: int
    first_day: dt.date
    last_day: dt.date
    missing_days: tuple[dt.date, ...]
    parents: tuple[str, ...]
    meta: dict


# -- plain traces -------------------------------------------------------------------------------
def trace_events(trace: pa.Table, ts_unit: str = "auto") -> pa.Table:
    """A plain access trace (``timestamp, site, lfn`` and optional ``size``) -> daily events.

    ``ts_unit``: see :func:`feat_requests.timestamps_ms` (floats are seconds, large integers ms).
    """
    if not isinstance(trace, pa.Table):
        trace = pa.Table.from_pandas(trace, preserve_index=False)     # a pandas DataFrame
    missing = [c for c in ("timestamp", "site", "lfn") if c not in trace.column_names]
    if missing:
        raise FeaturesError(f"trace lacks column(s) {', '.join(missing)}")
    day = np.floor_divide(timestamps_ms(trace["timestamp"], ts_unit), 86_400_000).astype(np.int32)
    size = trace["size"].cast(pa.int64()) if "size" in trace.column_names else pa.nulls(trace.num_rows, pa.int64())
    t = pa.table({"day": day, "site": trace["site"], "lfn": trace["lfn"], "size": size})
    t = t.filter(pc.and_(pc.is_valid(t["site"]), pc.is_valid(t["lfn"])))
    g = t.group_by(["day", "site", "lfn"], use_threads=False).aggregate([([], "count_all"), ("size", "max")])
    g = g.rename_columns(["day", "site", "lfn", "n_access", "size"])
    return g.set_column(0, "day", pc.cast(g["day"], pa.date32()))


def trace_features(trace: pa.Table, horizon: int = DEFAULT_HORIZON, candidate_days: int = 1, ts_unit: str = "auto",
                   site_order: list[str] | None = None) -> pa.Table:
    """The feature table of a plain trace (see :func:`compute_features`); same columns as training.

    Pass the training table's ``site_order`` (its metadata) to get the same ``site_code`` values.
    Every day between the first and last access is taken as present.
    """
    return compute_features(trace_events(trace, ts_unit), horizon, candidate_days, site_order=site_order)


# -- reduced partitions ---------------------------------------------------------------------------
def events_from_reduced(paths: Sequence[Path | str]) -> tuple[pa.Table, list[dt.date]]:
    """Read reduced partitions; returns the events and the days present (empty partitions included)."""
    tables, days = [], []
    for p in paths:
        t = pq.read_table(p, columns=_EVENT_COLS)
        day = partition_day(str(p))
        if day is None and t.num_rows:
            day = t["day"][0].as_py()
        if day is not None:
            days.append(day)
        tables.append(t)
    if not tables:
        raise FeaturesError("no reduced partitions to build features from")
    return pa.concat_tables(tables), sorted(set(days))


def _find_inputs(store: Store | None, reduced: str, first: dt.date | None, last: dt.date | None
                 ) -> tuple[list[Path], list[str], str]:
    """(parquet files, catalog dataset names, prefix) for ``reduced``: a directory or a catalog prefix."""
    as_dir = Path(reduced)
    pairs: list[tuple[Path, str | None]]
    if as_dir.is_dir():
        prefix = as_dir.name
        by_uri = {d.uri: d.name for d in store.list_datasets(kind="reduced")} if store is not None else {}
        pairs = [(f, by_uri.get(f.resolve().as_uri())) for f in sorted(as_dir.rglob("part-*.parquet"))]
    else:
        if store is None:
            raise FeaturesError(f"{reduced} is not a directory, and there is no catalog to look it up in")
        prefix = reduced.rstrip("/")
        pairs = [(uri_path(d.uri), d.name) for d in store.list_datasets(kind="reduced", prefix=prefix + "/")]
    pairs = [(f, n) for f, n in pairs if _in_range(partition_day(str(f)), first, last)]
    if not pairs:
        raise FeaturesError(f"no reduced partitions found for {reduced!r}"
                            + (f" between {first} and {last}" if first or last else ""))
    return [f for f, _ in pairs], [n for _, n in pairs if n], prefix


def uri_path(uri: str) -> Path:
    """A local path from a ``file://`` URI (or a plain path)."""
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    if "://" in uri:
        raise FeaturesError(f"{uri}: only local reduced partitions are supported")
    return Path(uri)


def _in_range(day: dt.date | None, first: dt.date | None, last: dt.date | None) -> bool:
    if day is None:
        return first is None and last is None
    return (first is None or day >= first) and (last is None or day <= last)


def build_features(reduced: str, out_dir: Path, store: Store | None = None, run_id: int | None = None, *,
                   horizon: int = DEFAULT_HORIZON, candidate_days: int = 1, first: dt.date | None = None,
                   last: dt.date | None = None, name: str | None = None, requests: bool = True) -> FeaturesResult:
    """Build, write (atomically) and register the feature table from reduced partitions.

    With ``requests``, also the request-level training table (``<name>.requests``, see the module doc).
    """
    if horizon < 1 or candidate_days < 1:
        raise FeaturesError("--horizon and --candidate-days must be at least 1")
    files, parents, prefix = _find_inputs(store, reduced, first, last)
    events, days = events_from_reduced(files)
    table = compute_features(events, horizon, candidate_days, days_present=days)
    first_day, last_day = days[0], days[-1]
    span = {first_day + dt.timedelta(days=i) for i in range((last_day - first_day).days + 1)}
    missing = tuple(sorted(span - set(days)))
    codes = site_code_map(table)
    site_order = [s for s, _ in sorted(codes.items(), key=lambda kv: kv[1])]
    labelled = pc.sum(table["label_complete"]).as_py() or 0
    positives = pc.sum(pc.cast(pc.and_(table["label_complete"], pc.equal(table["label"], 1)), pa.int64())).as_py() or 0
    meta = {"horizon": horizon, "candidate_days": candidate_days, "feature_columns": FEATURE_COLUMNS,
            "label_columns": LABEL_COLUMNS, "extra_columns": EXTRA_COLUMNS, "gap_cap": GAP_CAP,
            "first_day": first_day.isoformat(), "last_day": last_day.isoformat(),
            "days": len(days), "missing_days": [d.isoformat() for d in missing], "site_order": site_order,
            "tiers": list(TIERS), "rows_label_complete": int(labelled),
            "positive_rate": round(positives / labelled, 6) if labelled else None, "reduced_prefix": prefix}
    suffix = prefix[len("reduced"):] if prefix.startswith("reduced") else f"-{prefix}"
    name = name or f"features{suffix}/{first_day.isoformat()}_{last_day.isoformat()}_h{horizon}" + (
        f"_c{candidate_days}" if candidate_days > 1 else "")
    path = Path(out_dir) / f"{name}.parquet"
    if requests:
        meta["requests"] = _write_requests(files, days, meta, name, Path(out_dir), store, parents, run_id)
    meta["trace"] = _write_trace(files, name, Path(out_dir), store, parents, run_id)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    write_parquet(table, path)
    if store is not None:
        store.register_dataset(name, "features", path.resolve().as_uri(), format="parquet",
                               checksum=file_sha256(path), n_rows=table.num_rows, n_bytes=path.stat().st_size,
                               meta=meta, parents=parents, run_id=run_id)
    return FeaturesResult(path, name, table.num_rows, first_day, last_day, missing, tuple(parents), meta)


def _write_trace(files: Sequence[Path], daily_name: str, out_dir: Path, store: Store | None,
                 parents: Sequence[str], run_id: int | None) -> str:
    """Write and register the window's approximate request trace (what the next-read model trains on)."""
    from smartcache.tasks.features.request_table import approx_trace

    trace = approx_trace(files)
    name = f"{daily_name}.trace"
    path = out_dir / f"{name}.parquet"
    write_parquet(trace, path)
    if store is not None:
        store.register_dataset(name, TRACE_KIND, path.resolve().as_uri(), format="parquet",
                               checksum=file_sha256(path), n_rows=trace.num_rows, n_bytes=path.stat().st_size,
                               meta={"trace": "approximate: n_access reads spread evenly over [first_ts, last_ts] "
                                              "of each reduced row"}, parents=list(parents), run_id=run_id)
    return name


def _write_requests(files: Sequence[Path], days: list[dt.date], daily_meta: dict, daily_name: str, out_dir: Path,
                    store: Store | None, parents: Sequence[str], run_id: int | None) -> str:
    """Write and register the request-level table of the same partitions; returns its dataset name."""
    from smartcache.tasks.features.request_table import REQUEST_LABELS, approx_trace, request_table

    horizon = daily_meta["horizon"]
    table = request_table(approx_trace(files), horizon, days_present=days, site_order=daily_meta["site_order"])
    labelled = pc.sum(table["label_complete"]).as_py() or 0
    positives = pc.sum(pc.cast(pc.and_(table["label_complete"], pc.equal(table["label"], 1)), pa.int64())).as_py() or 0
    name = f"{daily_name}.requests"
    meta = {"granularity": "request", "daily": daily_name, "horizon": horizon, "feature_columns": FEATURE_COLUMNS,
            "label_columns": REQUEST_LABELS, "gap_cap": GAP_CAP, "first_day": daily_meta["first_day"],
            "last_day": daily_meta["last_day"], "days": daily_meta["days"],
            "missing_days": daily_meta["missing_days"], "site_order": daily_meta["site_order"],
            "trace": "approximate: n_access reads spread evenly over [first_ts, last_ts] of each reduced row",
            "rows_label_complete": int(labelled),
            "positive_rate": round(positives / labelled, 6) if labelled else None}
    path = out_dir / f"{name}.parquet"
    write_parquet(table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()}), path)
    if store is not None:
        store.register_dataset(name, REQUESTS_KIND, path.resolve().as_uri(), format="parquet",
                               checksum=file_sha256(path), n_rows=table.num_rows, n_bytes=path.stat().st_size,
                               meta=meta, parents=list(parents), run_id=run_id)
    return name


def read_meta(path: Path | str) -> dict:
    """The feature-table metadata (feature columns, horizon, site order, ...) stored in the Parquet file."""
    md = pq.read_schema(path).metadata or {}
    if META_KEY not in md:
        raise FeaturesError(f"{path} is not a smartcache feature table")
    return json.loads(md[META_KEY])


# -- command line ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m smartcache.tasks.features", description=__doc__.split("\n")[0])
    p.add_argument("--reduced", default="reduced", help="catalog prefix of reduced datasets, or a directory")
    p.add_argument("--out", type=Path, help="output directory (default: the configured data root)")
    p.add_argument("--catalog-url", help="catalog URL (default: from the configuration)")
    p.add_argument("--no-catalog", action="store_true")
    p.add_argument("--run-id", type=int)
    p.add_argument("--horizon", type=int, default=DEFAULT_HORIZON,
                   help=f"label horizon H in days (default {DEFAULT_HORIZON})")
    p.add_argument("--candidate-days", type=int, default=1,
                   help="a file is a candidate on day d if read at the site within the last K days (default 1)")
    p.add_argument("--from", dest="first", type=dt.date.fromisoformat, help="first day (YYYY-MM-DD)")
    p.add_argument("--to", dest="last", type=dt.date.fromisoformat, help="last day (YYYY-MM-DD)")
    p.add_argument("--name", help="catalog name of the feature table")
    p.add_argument("--no-requests", dest="requests", action="store_false",
                   help="do not build the request-level training table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config()
        store = None if args.no_catalog else open_store(args.catalog_url or cfg.catalog_url, migrate=True)
        res = build_features(args.reduced, args.out or cfg.data_root, store, args.run_id, horizon=args.horizon,
                             candidate_days=args.candidate_days, first=args.first, last=args.last, name=args.name,
                             requests=args.requests)
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{res.dataset}: {res.n_rows} rows, {res.first_day}..{res.last_day}"
          f"{f', {len(res.missing_days)} missing day(s)' if res.missing_days else ''} -> {res.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
