"""DAG task: bulk-score every candidate (site, file) and write per-site placement lists.

    python -m smartcache.tasks.score --catalog-url URL --run-id N --features DATASET --model NAME[:V] \
        [--site S ...] --out DIR [--push]

Candidates are the files a site read within the last ``--lookback-days`` days of the feature table
(default: 7 for a model with a time discount, ``decay_days`` in its params, else only the latest day),
each described by its latest row (its state at the end of the day of its last read). They stream through
the model's TFLite form in batches, newest day first; per site only the current best list is kept, so
memory is bounded by the list, one batch and the names already seen.

Ranking -- what maximises the byte hit ratio: a cached file of ``size`` bytes earns ``size`` hit bytes
per future read and costs ``size`` bytes of cache. Its value per cached byte is therefore
``E[future reads]``, independent of its size, and filling the cache by decreasing value per byte is the
greedy knapsack solution. The model estimates ``p`` = P(read again within the horizon); with the
reads-given-reuse taken as equal across files, ``E[reads] ∝ p``, so files rank by ``p`` (ties: smaller
file first, then LFN). Ranking by ``p × size`` instead ("bytes saved") would favour big files per
byte of cache, and ``p / size`` maximises the object hit ratio, not the byte hit ratio.
A model with a time discount (request-level models, see sim_policies.model_decay_kernel) values a file
``p × exp(-age / decay_days)``, ``age`` = days since its last read -- the order its cache policy keeps --
so a file read today outranks one read days ago with the same ``p``. The list is the longest prefix of
that ranking whose total size fits the site's cache size; its ``score`` column is that value.

Outputs per site in ``--out``: ``<site>.parquet`` (``lfn, size, score, rank``) and ``<site>.txt`` (one
LFN per line under ``# smartcache placement site=S model=NAME:V created=ISO8601 files=N bytes=B``). A
rerun that yields the same list keeps the files and the catalog row as they are (idempotent).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from smartcache.catalog import Placement, Store, open_store
from smartcache.catalog.errors import Invalid, NotFound, SmartcacheError
from smartcache.tasks.features import table as T
from smartcache.tasks.score.scorer import Scorer, load_scorer

log = logging.getLogger("smartcache.score")

SCAN_BATCH = 65536
DECAY_LOOKBACK_DAYS = 7   # with a time discount: e^(-7/3) ~ 0.1, files read longer ago hardly ever make a list
HEADER = "# smartcache placement"
LIST_SCHEMA = pa.schema([("lfn", pa.string()), ("size", pa.int64()), ("score", pa.float32()),
                         ("rank", pa.int32())])


# -- ranking (pure) -----------------------------------------------------------------------------
def rank_and_cut(table: pa.Table, capacity: int, *, blocker: bool = False) -> pa.Table:
    """Rank ``lfn, size, score`` rows by score (ties: smaller, then LFN) and keep the longest prefix
    that fits in ``capacity`` bytes; one row per LFN (its best). Adds ``rank`` (1 = best).

    ``blocker``: also keep the first row that does not fit (what :class:`SiteRanking` needs to merge exactly).
    """
    if capacity <= 0:
        raise Invalid("cache size must be positive")
    if table.num_rows == 0:
        return LIST_SCHEMA.empty_table()
    order = pc.sort_indices(table, sort_keys=[("score", "descending"), ("size", "ascending"),
                                              ("lfn", "ascending")])
    t = table.take(order)
    ids = pc.dictionary_encode(t.column("lfn")).combine_chunks().indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(ids, return_index=True)
    if len(first) != t.num_rows:                        # duplicates: keep each LFN's best row
        t = t.take(pa.array(np.sort(first)))
    size = t.column("size").to_numpy(zero_copy_only=False).astype(np.int64)
    n = int(np.searchsorted(np.cumsum(size), capacity, side="right"))
    n = min(n + 1, t.num_rows) if blocker else n
    t = t.slice(0, n)
    return pa.table({"lfn": t.column("lfn").cast(pa.string()), "size": t.column("size").cast(pa.int64()),
                     "score": t.column("score").cast(pa.float32()),
                     "rank": pa.array(np.arange(1, n + 1, dtype=np.int32))}, schema=LIST_SCHEMA)


class SiteRanking:
    """The best list so far for one site; batches merge in, anything past the cut is dropped.

    Dropping is exact when the first row past the cut (the *blocker*) is kept: the longest fitting
    prefix of all rows never reaches past it (more rows ahead of it only make it fit less), so no row
    ranked after it can ever enter the list, while the blocker itself still stops rows ranked below it
    that would fit in the space left.
    """

    def __init__(self, site: str, capacity: int):
        self.site, self.capacity = site, capacity
        self._kept = LIST_SCHEMA.empty_table()       # the list so far plus its blocker
        self.candidates = 0

    @property
    def best(self) -> pa.Table:
        """The list: the longest prefix of the ranking of every row added so far that fits."""
        size = self._kept.column("size").to_numpy(zero_copy_only=False).astype(np.int64)
        return self._kept.slice(0, int(np.searchsorted(np.cumsum(size), self.capacity, side="right")))

    def add(self, lfn: pa.Array, size: np.ndarray, score: np.ndarray) -> None:
        self.candidates += len(lfn)
        batch = pa.table({"lfn": lfn.cast(pa.string()), "size": pa.array(size, pa.int64()),
                          "score": pa.array(score, pa.float32())})
        merged = pa.concat_tables([self._kept.drop_columns(["rank"]), batch])
        self._kept = rank_and_cut(merged, self.capacity, blocker=True)


# -- the list files -----------------------------------------------------------------------------
def list_text(site: str, model_ref: str, lst: pa.Table, created: datetime, extra: str = "") -> str:
    n_bytes = int(pc.sum(lst.column("size")).as_py() or 0)
    head = (f"{HEADER} site={site} model={model_ref} created={created.isoformat(timespec='seconds')} "
            f"files={lst.num_rows} bytes={n_bytes}\n")
    if extra:
        head += f"# {extra}\n"
    return head + "".join(f"{lfn}\n" for lfn in lst.column("lfn").to_pylist())


def parse_header(text: str) -> dict[str, str]:
    """The ``key=value`` fields of a list's first header line."""
    first = text.split("\n", 1)[0]
    if not first.startswith(HEADER):
        return {}
    return dict(f.split("=", 1) for f in first[len(HEADER):].split() if "=" in f)


def _body(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def write_site_list(out: Path, site: str, model_ref: str, lst: pa.Table, extra: str = "") -> tuple[Path, str, bool]:
    """Write ``<site>.txt`` and ``<site>.parquet``; returns (txt path, sha256, written?).

    An existing list with the same model and the same LFNs is kept as it is.
    """
    txt, parquet = out / f"{site}.txt", out / f"{site}.parquet"
    lfns = lst.column("lfn").to_pylist()
    if txt.is_file() and parquet.is_file():
        old = txt.read_text()
        if parse_header(old).get("model") == model_ref and _body(old) == lfns:
            return txt, hashlib.sha256(old.encode()).hexdigest(), False
    text = list_text(site, model_ref, lst, datetime.now(timezone.utc), extra)
    _atomic_write(parquet, lambda p: pq.write_table(lst, p))
    _atomic_write(txt, lambda p: p.write_text(text))
    return txt, hashlib.sha256(text.encode()).hexdigest(), True


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)


# -- the task -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteList:
    site: str
    placement: Placement
    path: Path
    candidates: int
    n_files: int
    n_bytes: int
    changed: bool


def latest_day(dataset: ds.Dataset) -> pa.Scalar:
    col = dataset.to_table(columns=[T.DAY_COLUMN]).column(T.DAY_COLUMN)
    if len(col) == 0:
        raise Invalid("the feature table is empty")
    return pc.max(col)


def score_sites(store: Store, features: str, model: str, out: Path, *, sites: Sequence[str] = (),
                run_id: int | None = None, batch_rows: int = SCAN_BATCH, scorer: Scorer | None = None,
                progress: bool | None = None, lookback_days: int | None = None) -> tuple[list[SiteList], dict]:
    """Score the recent candidates of ``features`` and register one placement per site (see the module doc)."""
    t0 = time.perf_counter()
    scorer = scorer or load_scorer(store, model)
    rec = store.get_model(*_name_version(scorer.ref))
    if getattr(scorer, "kind", None) == "next-gap":
        return _score_next_gap(store, features, scorer, rec, out, _sites(store, sites), run_id, t0)
    dataset = T.open_table(store.get_dataset(features).uri)
    day = latest_day(dataset)
    decay = getattr(scorer, "decay_days", None)
    if lookback_days is None:
        lookback_days = DECAY_LOOKBACK_DAYS if decay else 1
    if lookback_days < 1:
        raise Invalid("lookback must be at least one day")
    wanted = _sites(store, sites)
    rankings = {s.name: SiteRanking(s.name, s.cache_size) for s in wanted}
    cols = list(dict.fromkeys(["site", "lfn", "size", *scorer.input_features]))
    missing = [c for c in cols if c not in dataset.schema.names]
    if missing:
        raise Invalid(f"feature table {features} lacks column(s) {', '.join(missing)} needed by {scorer.ref}")
    seen: dict[str, set[str]] = {name: set() for name in rankings}
    # a file's state at its last read: tables built with candidate days > 1 also describe files on days
    # without a read (days_since_last > 0), states a request-level model never sees
    read_that_day = ds.field("days_since_last") == 0 if decay and "days_since_last" in dataset.schema.names else None
    n_rows, score_s = 0, 0.0
    from tqdm import tqdm
    bar = tqdm(desc="scoring", unit=" rows", file=sys.stderr, disable=not _show(progress))
    for age, d in enumerate(_recent_days(day, lookback_days)):
        filt = (ds.field(T.DAY_COLUMN) == d) & ds.field("site").isin(list(rankings))
        if read_that_day is not None:
            filt &= read_that_day
        discount = float(np.exp(-age / decay)) if decay else 1.0
        fresh: dict[str, list[str]] = {name: [] for name in rankings}
        for batch in dataset.to_batches(columns=cols, filter=filt, batch_size=batch_rows):
            if batch.num_rows == 0:
                continue
            tb = pa.Table.from_batches([batch])
            x = T.feature_matrix(tb, scorer.input_features)
            t1 = time.perf_counter()
            p = scorer.predict(x) * np.float32(discount)
            score_s += time.perf_counter() - t1
            size = tb.column("size").to_numpy(zero_copy_only=False)
            site_col = tb.column("site")
            for name, ranking in rankings.items():
                idx = np.flatnonzero(pc.equal(site_col, name).to_numpy(zero_copy_only=False))
                if age:   # a file read on a later day was ranked with its later state
                    lfns = tb.column("lfn").take(pa.array(idx)).to_pylist()
                    idx = idx[[lfn not in seen[name] for lfn in lfns]] if len(idx) else idx
                if len(idx):
                    lfn = tb.column("lfn").take(pa.array(idx)).combine_chunks()
                    ranking.add(lfn, size[idx], p[idx])
                    if lookback_days > 1:
                        fresh[name] += lfn.to_pylist()
            n_rows += batch.num_rows
            bar.update(batch.num_rows)
        for name, lfns in fresh.items():
            seen[name].update(lfns)
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    day_iso = day.as_py().isoformat() if hasattr(day.as_py(), "isoformat") else str(day.as_py())
    value = f"p(reuse)*exp(-age/{decay:g}d)" if decay else "p(reuse)"
    results = [_register(store, r, rec, out, features, day_iso, run_id, value) for r in rankings.values()]
    stats = {"rows": n_rows, "day": day_iso, "model": rec.ref, "seconds": round(time.perf_counter() - t0, 3),
             "score_seconds": round(score_s, 3), "rows_per_s": round(n_rows / score_s) if score_s else None}
    return results, stats


def _score_next_gap(store: Store, features: str, scorer: Scorer, rec, out: Path, wanted, run_id: int | None,
                    t0: float) -> tuple[list[SiteList], dict]:
    """Rank every file of the window's trace by the next-read model's value at the window's end."""
    import pyarrow.parquet as pq

    from smartcache.tasks.common.trace import trace_from_table
    from smartcache.tasks.score.nextgap import DEFAULT_HORIZON_S, file_values

    meta = store.get_dataset(features).meta
    if not meta.get("trace"):
        raise Invalid(f"{features} has no request trace for the next-read model {scorer.ref}: rebuild the features")
    tds = store.get_dataset(meta["trace"])
    trace = trace_from_table(pq.read_table(T.local_path(tds.uri)), source=tds.name)
    names = {s.name for s in wanted}
    trace = trace.take(np.isin(trace.site, [i for i, s in enumerate(trace.sites) if s in names]))
    rankings = {s.name: SiteRanking(s.name, s.cache_size) for s in wanted}
    t1 = time.perf_counter()
    vals = file_values(trace, scorer, horizon_s=DEFAULT_HORIZON_S)
    score_s = time.perf_counter() - t1
    for i, name in enumerate(trace.sites):
        idx = np.flatnonzero(vals.site == i)
        if name in rankings and len(idx):
            rankings[name].add(vals.lfn.take(pa.array(idx)), vals.size[idx], vals.value[idx].astype(np.float32))
    out.mkdir(parents=True, exist_ok=True)
    day_iso = datetime.fromtimestamp(float(trace.ts[-1]) if len(trace) else 0.0, tz=timezone.utc).date().isoformat()
    value = f"P(read again within {DEFAULT_HORIZON_S / 86400:g}d | not read since its last read)"
    results = [_register(store, r, rec, out, features, day_iso, run_id, value) for r in rankings.values()]
    stats = {"rows": len(vals.value), "day": day_iso, "model": rec.ref, "seconds": round(time.perf_counter() - t0, 3),
             "score_seconds": round(score_s, 3), "rows_per_s": round(len(trace) / score_s) if score_s else None}
    return results, stats


def _recent_days(latest: pa.Scalar, n: int) -> list[pa.Scalar]:
    """``latest`` and the ``n - 1`` days before it, newest first, as scalars of the day column's type."""
    value = latest.as_py()
    if isinstance(value, date):
        return [pa.scalar(value - timedelta(days=k), latest.type) for k in range(n)]
    return [pa.scalar(value - k, latest.type) for k in range(n)]   # integer day numbers


def _show(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _name_version(ref: str) -> tuple[str, int]:
    name, _, version = ref.rpartition(":")
    return name, int(version)


def _sites(store: Store, names: Sequence[str]):
    if names:
        return [store.get_site(n) for n in dict.fromkeys(names)]
    found = store.list_sites()
    if not found:
        raise NotFound("no sites in the catalog: add them with 'smartcache sites add NAME --cache-size SIZE'")
    return found


def _register(store: Store, r: SiteRanking, model, out: Path, features: str, day: str,
              run_id: int | None, value: str = "p(reuse)") -> SiteList:
    lst = r.best
    extra = f"features={features} day={day} value={value} cache_size={r.capacity} candidates={r.candidates}"
    path, digest, changed = write_site_list(out, r.site, model.ref, lst, extra)
    n_bytes = int(pc.sum(lst.column("size")).as_py() or 0)
    uri = str(path.resolve())
    placement = _same_placement(store, r.site, uri, digest)
    if placement is None:
        placement = store.add_placement(r.site, uri, lst.num_rows, n_bytes, model=(model.name, model.version),
                                        checksum=digest, run_id=run_id)
    store.register_dataset(f"placements/{r.site}/{model.ref}/{day}", "placement", str((out / f"{r.site}.parquet")
                           .resolve()), format="parquet", checksum=digest, n_rows=lst.num_rows, n_bytes=n_bytes,
                           meta={"site": r.site, "model": model.ref, "day": day, "placement_id": placement.id,
                                 "list": uri, "candidates": r.candidates, "cache_size": r.capacity},
                           parents=[features], run_id=run_id)
    log.info("%s: %d of %d candidates, %d bytes -> %s", r.site, lst.num_rows, r.candidates, n_bytes, uri)
    return SiteList(r.site, placement, path, r.candidates, lst.num_rows, n_bytes, changed)


def _same_placement(store: Store, site: str, uri: str, digest: str) -> Placement | None:
    try:
        last = store.latest_placement(site)
    except NotFound:
        return None
    return last if last.uri == uri and last.checksum == digest else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.score", description=__doc__.split("\n")[0])
    ap.add_argument("--catalog-url", required=True)
    ap.add_argument("--run-id", type=int)
    ap.add_argument("--features", required=True, help="catalog name of the feature table dataset")
    ap.add_argument("--model", required=True, help="NAME (production, else newest) or NAME:VERSION")
    ap.add_argument("--site", action="append", default=[], help="site (repeatable; default: every catalog site)")
    ap.add_argument("--out", type=Path, required=True, help="folder for <site>.txt and <site>.parquet")
    ap.add_argument("--push", action="store_true", help="push each list to its site afterwards")
    ap.add_argument("--batch-rows", type=int, default=SCAN_BATCH)
    ap.add_argument("--lookback-days", type=int,
                    help=f"candidates: files read within this many days (default {DECAY_LOOKBACK_DAYS} for "
                         "models with a time discount, else 1: the latest day)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    failed = 0
    try:
        store = open_store(args.catalog_url)
        try:
            lists, stats = score_sites(store, args.features, args.model, args.out, sites=args.site,
                                       run_id=args.run_id, batch_rows=args.batch_rows,
                                       lookback_days=args.lookback_days)
            for sl in lists:
                print(f"{sl.site}: {sl.n_files} files, {sl.n_bytes} bytes of {sl.candidates} candidates -> "
                      f"{sl.path}{'' if sl.changed else ' (unchanged)'}")
            if args.push:
                from smartcache.tasks.push.task import push_placement
                for sl in lists:
                    res = push_placement(store, _fresh(store, sl.placement.id, sl.site))
                    print(f"{sl.site}: push {'ok' if res.ok else 'FAILED'} {res.destination} {res.error or ''}")
                    failed += not res.ok
        finally:
            store.close()
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"scored {stats['rows']} candidates of {stats['day']} with {stats['model']} "
          f"({stats['rows_per_s']} rows/s in the model)")
    return 1 if failed else 0


def _fresh(store: Store, placement_id: int, site: str) -> Placement:
    for p in store.list_placements(site):
        if p.id == placement_id:
            return p
    raise NotFound(f"placement {placement_id} disappeared")


if __name__ == "__main__":
    sys.exit(main())
