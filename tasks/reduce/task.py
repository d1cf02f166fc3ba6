"""REDUCE: raw access-log partitions -> one Parquet per day of (day, site, file) aggregates.

Keeps records with ``Type == analysis`` (any case), a successful read (``SuccessFlag == 1``; when
the flag is null, ``JobExecExitCode == 0``: a job that failed after reading its file still warmed
the cache), ``FileSize > 0``, a file name and a site; optionally only chosen sites or a region (the
country code of the site name, ``T2_IT_Pisa`` -> IT). Each dropped record is counted under the first
rule it fails (``reduce_agg.DROP_REASONS``). The rest is aggregated per (site, file) with Arrow's
group-by: ``n_access`` records, distinct ``JobId``/``UserId``/``TaskId``, summed ``WrapCPU`` and
``WrapWC`` of the reading jobs (a job that reads N files counts in each), first/last access time
(``StartedRunningTimeStamp``, else the finish or exit time), the share of ``ProtocolUsed == Local``;
``dataset`` is the InputCollection (else the dataset the LFN names), ``tier`` its last component.

Each day's sources (``part-*`` files of ``year=/month=/day=``) become
``<out>/<prefix>/year=Y/month=M/day=D/part-00000.parquet`` (zstd, sorted by site and file), written
atomically, so a rerun rewrites the same bytes and upserts the same catalog rows. Memory stays
bounded: the reader streams batches and the aggregation keeps partial aggregates (``reduce_agg``).

The day of a row is the day of its partition (as CMS partitions the logs), not the day of its
timestamp; a source without a date in its path takes the most common day of its timestamps.

Catalog: every source is a ``raw`` dataset (``raw/YYYY-MM-DD``, ``.../part-N`` for further parts),
every output a ``reduced`` dataset with the raw ones as parents and the read/kept/dropped counts in
its meta. A damaged source is quarantined (partial or whole) and the rest goes on; a clean read of a
source releases its old quarantine entry. A ``_manifest.json`` beside the ``year=`` tree (the
generator writes one) makes the count of lost records exact.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import fsspec
import pyarrow.compute as pc

from smartcache.catalog import SmartcacheError, Store, load_config, open_store
from smartcache.tasks.common.io import file_sha256, write_parquet
from smartcache.tasks.reduce import nodestats
from smartcache.tasks.reduce.aggregate import Aggregator, Counts, SiteFilter, filter_batch
from smartcache.tasks.reduce.readers import (
    DEFAULT_BATCH,
    ReadReport,
    SourceError,
    list_partitions,
    partition_day,
    partition_part,
    read_partition,
)

MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class PartitionResult:
    """What became of one day (or one dateless source)."""

    day: dt.date | None
    sources: tuple[str, ...]
    reports: tuple[ReadReport, ...]
    path: Path | None                     # None: nothing readable, no output written
    dataset: str | None                   # catalog name of the reduced dataset
    n_rows: int
    records_read: int
    records_kept: int
    dropped: dict[str, int]

    @property
    def status(self) -> str:
        if all(r.unreadable for r in self.reports):
            return "unreadable"
        return "ok" if all(r.ok for r in self.reports) else "partial"

    def to_dict(self) -> dict:
        return {"day": self.day.isoformat() if self.day else None, "status": self.status,
                "path": str(self.path) if self.path else None, "dataset": self.dataset, "rows": self.n_rows,
                "records_read": self.records_read, "records_kept": self.records_kept, "dropped": self.dropped,
                "sources": [r.to_dict() for r in self.reports]}


@dataclass(frozen=True)
class ReduceResult:
    partitions: tuple[PartitionResult, ...] = field(default_factory=tuple)

    @property
    def quarantined(self) -> list[ReadReport]:
        return [r for p in self.partitions for r in p.reports if not r.ok]

    @property
    def records_read(self) -> int:
        return sum(p.records_read for p in self.partitions)

    @property
    def records_kept(self) -> int:
        return sum(p.records_kept for p in self.partitions)

    def to_dict(self) -> dict:
        return {"records_read": self.records_read, "records_kept": self.records_kept,
                "quarantined": [r.source for r in self.quarantined],
                "partitions": [p.to_dict() for p in self.partitions]}


def default_prefix(sites: Sequence[str] | None, region: str | None) -> str:
    """Catalog/dir prefix of reduced data: 'reduced', or tagged by the filter so filtered runs don't clash."""
    if region:
        return f"reduced-{region.replace(',', '+').upper()}"
    if sites:
        names = sorted(set(sites))
        tag = "+".join(names) if len(names) <= 3 else "sites-" + hashlib.sha1("\n".join(names).encode()).hexdigest()[:8]
        return f"reduced-{tag}"
    return "reduced"


def raw_name(source: str, day: dt.date | None) -> str:
    if day is None:
        return "raw/" + source.rstrip("/").rsplit("/", 1)[-1]
    part = partition_part(source)
    return f"raw/{day.isoformat()}" + (f"/part-{part:05d}" if part else "")


def output_path(out_dir: Path, prefix: str, day: dt.date) -> Path:
    return out_dir / prefix / f"year={day.year}" / f"month={day.month}" / f"day={day.day}" / "part-00000.parquet"


def manifest_counts(sources: Sequence[str]) -> dict[str, int]:
    """Expected record counts of sources listed in a ``_manifest.json`` beside their ``year=`` tree.

    The generator writes one; with it a damaged partition's lost-record count is exact.
    """
    roots: dict[str, dict[str, int]] = {}
    out = {}
    for src in sources:
        i = src.find("/year=")
        if i < 0:
            continue
        root = src[:i]
        if root not in roots:
            roots[root] = _load_manifest(root + "/_manifest.json")
        n = roots[root].get(src[i + 1:])
        if n is not None:
            out[src] = n
    return out


def _load_manifest(url: str) -> dict[str, int]:
    try:
        with fsspec.open(url, "rt") as f:
            doc = json.load(f)
        return {p["path"]: int(p["records"]) for p in doc.get("partitions", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}                 # no (usable) manifest: counts of lost records stay estimates


def reduce_partitions(sources: list[str], out_dir: Path, store: Store | None, run_id: int | None,
                      sites: list[str] | None = None, region: str | None = None, *, prefix: str | None = None,
                      batch_size: int = DEFAULT_BATCH, progress: bool = False,
                      use_manifest: bool = True) -> "ReduceResult":
    """Reduce ``sources`` (paths or fsspec URLs) into per-day Parquet under ``out_dir``; see module doc."""
    if not sources:
        raise SourceError("no sources to reduce")
    expected = manifest_counts(sources) if use_manifest else {}
    out_dir = Path(out_dir)
    prefix = prefix or default_prefix(sites, region)
    filt = SiteFilter.of(sites, region)
    groups: dict[object, list[str]] = {}
    for src in sources:
        day = partition_day(src)
        groups.setdefault(day if day is not None else ("nodate", src), []).append(src)
    results = []
    items = sorted(groups.items(), key=lambda kv: (str(kv[0])))
    for key, srcs in _progress(items, progress):
        day = key if isinstance(key, dt.date) else None
        results.append(_reduce_day(day, sorted(srcs), out_dir, prefix, filt, store, run_id, batch_size, expected))
    return ReduceResult(tuple(results))


def _reduce_day(day: dt.date | None, sources: list[str], out_dir: Path, prefix: str, filt: SiteFilter,
                store: Store | None, run_id: int | None, batch_size: int,
                expected: dict[str, int]) -> PartitionResult:
    agg, counts, reports = Aggregator(), Counts(), []
    ts_days: Counter[int] = Counter()
    for src in sources:
        part = read_partition(src, batch_size=batch_size, expected_records=expected.get(src))
        for batch in part:
            t, c = filter_batch(batch, filt)
            counts.add(c)
            agg.add(t)
            if day is None:       # dateless source: vote on the day of every record's timestamp
                ts = pc.coalesce(batch["StartedRunningTimeStamp"], batch["FinishedTimeStamp"])
                vc = pc.value_counts(pc.divide(pc.drop_null(ts), MS_PER_DAY))
                ts_days.update({int(v["values"].as_py()): int(v["counts"].as_py()) for v in vc})
        reports.append(part.report)
    if day is None and ts_days:
        day = dt.date(1970, 1, 1) + dt.timedelta(days=ts_days.most_common(1)[0][0])
    readable = not all(r.unreadable for r in reports)
    path = dataset = None
    n_rows = 0
    if readable and day is not None:
        table = agg.result(day)
        n_rows = table.num_rows
        path = output_path(out_dir, prefix, day)
        write_parquet(table, path)
        dataset = f"{prefix}/{day.isoformat()}"
    result = PartitionResult(day, tuple(sources), tuple(reports), path, dataset, n_rows, counts.records,
                             counts.kept, dict(counts.dropped))
    if store is not None:
        _record(store, run_id, result, prefix)
    return result


def _record(store: Store, run_id: int | None, res: PartitionResult, prefix: str) -> None:
    parents = []
    for src, rep in zip(res.sources, res.reports):
        name = raw_name(src, res.day)
        parents.append(name)
        store.register_dataset(name, "raw", _uri(src), format=rep.fmt, n_rows=rep.records_read,
                               n_bytes=rep.n_bytes, meta=rep.to_dict(), run_id=run_id)
        if rep.ok:
            store.release(_uri(src))
        else:
            store.quarantine(_uri(src), rep.reason, partial=rep.partial, n_bytes=rep.n_bytes,
                             records_read=rep.records_read, records_lost=rep.records_lost + rep.records_dropped,
                             run_id=run_id)
    if res.path is None or res.dataset is None:
        return
    meta = {"day": res.day.isoformat() if res.day else None, "status": res.status,
            "records_read": res.records_read, "records_kept": res.records_kept, "dropped": res.dropped,
            "records_lost": sum(r.records_lost for r in res.reports),
            "records_unusable": sum(r.records_dropped for r in res.reports),
            "partial": res.status != "ok", "prefix": prefix}
    store.register_dataset(res.dataset, "reduced", res.path.resolve().as_uri(), format="parquet",
                           checksum=file_sha256(res.path), n_rows=res.n_rows, n_bytes=res.path.stat().st_size,
                           meta=meta, parents=parents, run_id=run_id)


def _uri(source: str) -> str:
    """Local paths are recorded absolute so that every node names a source the same way."""
    if "://" in source:
        return source
    return str(Path(source).resolve())


def _progress(items: list, enabled: bool):
    if not enabled or len(items) < 2:
        return items
    from tqdm import tqdm
    return tqdm(items, desc="reduce", unit="day", file=sys.stderr, disable=not sys.stderr.isatty())


# -- command line ---------------------------------------------------------------------------------
def _days(values: list[str]) -> list[dt.date]:
    out: list[dt.date] = []
    for v in values:
        for item in v.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                if ":" in item:
                    a, b = (dt.date.fromisoformat(x) for x in item.split(":", 1))
                    out.extend(a + dt.timedelta(days=i) for i in range((b - a).days + 1))
                else:
                    out.append(dt.date.fromisoformat(item))
            except ValueError as e:
                raise SourceError(f"bad day {item!r}: use YYYY-MM-DD or FIRST:LAST") from e
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m smartcache.tasks.reduce", description=__doc__.split("\n")[0])
    p.add_argument("sources", nargs="*", help="raw partition files (paths or fsspec URLs)")
    p.add_argument("--source-root", help="root of year=/month=/day= partitions (instead of listing files)")
    p.add_argument("--day", action="append", default=[], help="YYYY-MM-DD, a comma list or FIRST:LAST (repeatable)")
    p.add_argument("--out", type=Path, help="output directory (default: the configured data root)")
    p.add_argument("--catalog-url", help="catalog URL (default: from the configuration)")
    p.add_argument("--no-catalog", action="store_true", help="do not record anything in the catalog")
    p.add_argument("--run-id", type=int)
    p.add_argument("--site", action="append", default=[], help="keep only this site (repeatable)")
    p.add_argument("--region", help="keep only sites of this country code (e.g. IT, or IT,US)")
    p.add_argument("--prefix", help="dataset/dir prefix (default: 'reduced', tagged by the filters)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    p.add_argument("--no-manifest", action="store_true", help="ignore a _manifest.json beside the partitions")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config()
        sources = list(args.sources)
        if args.source_root:
            sources += list_partitions(args.source_root, _days(args.day) if args.day else None)
        elif args.day:
            raise SourceError("--day needs --source-root")
        if not sources:
            raise SourceError("nothing to reduce: give source files or --source-root")
        store = None if args.no_catalog else open_store(args.catalog_url or cfg.catalog_url, migrate=True)
        out = args.out or cfg.data_root
        res = reduce_partitions(sources, out, store, args.run_id, args.site or None, args.region,
                                prefix=args.prefix, batch_size=args.batch_size, progress=not args.no_progress,
                                use_manifest=not args.no_manifest)
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        for p in res.partitions:
            day = p.day.isoformat() if p.day else "?"
            print(f"{day} {p.status:10} read {p.records_read:>9} kept {p.records_kept:>9} rows {p.n_rows:>8} "
                  f"{p.path or '-'}")
        for r in res.quarantined:
            print(f"quarantined {'(partial) ' if r.partial else ''}{r.source}: {r.reason}", file=sys.stderr)
    print(nodestats.line(res, started), file=sys.stderr)      # what this node cost (DAG measurements)
    return 0


if __name__ == "__main__":
    sys.exit(main())
