"""Realistic synthetic CMS raw access logs (JobMonitoring "data popularity" records).

``python -m smartcache.tasks.generate --months 6 --out DIR`` (or ``smartcache generate logs``) writes
one partition per UTC day, ``year=YYYY/month=M/day=D/part-00000.avro`` (Avro, RAW_AVRO_SCHEMA,
deflate) or ``.json.gz`` (JSON lines), plus ``_manifest.json`` (per-partition record counts by
category) and, with ``--corrupt K``, ``_corrupt.json``. Same seed => byte-identical files. Each day
derives its randomness from ``(seed, day)`` and the populations (datasets, users, campaigns) from the
seed alone, so a day's records do not depend on the window it is generated in, and days are
generated in parallel worker processes in bounded memory.

Volume: scale 1 is about 12-13 k records per day (two regions, 14 sites, ~370 analysts); ``--scale``
multiplies the numbers of users, datasets, campaigns and tasks -- so statistics such as the reuse
ceiling stay put -- and thus the volume. A day of more than ``part_records`` (200 k) records is
written as several part files, one at a time, so memory per worker stays below ~0.9 GB at any
scale (about 150 MB plus ~3.5 KB per record of one part); six months at scale 1 take ~37
CPU-seconds for Avro, ~50 for JSON; a 10 GB-class set (six months at scale 25) ~20 CPU-minutes.

What the records look like (knobs of :class:`GeneratorParams` in brackets):

- Datasets ``/Primary/Processed/TIER`` appear every week [datasets_per_week], named after the era or
  MC campaign of their birth date (``/Muon0/Run2026D-PromptReco-v2/MINIAOD``,
  ``/TTto2L2Nu_.../Run3Summer26MiniAODv7-160X_mcRun3_2026_realistic_v31-v1/MINIAODSIM``). Popularity
  rises over a few days [rise_days] and decays exponentially [decay_days], with a heavy-tailed
  amplitude [popularity_sigma]; a few evergreen datasets stay popular [evergreen_datasets]. Datasets
  older than max_dataset_age_days are no longer read.
- Files: data ``/store/data/<era>/<primary>/<TIER>/<version>/000/<run3>/<run3>/00000/<GUID>.root``,
  MC ``/store/mc/<campaign>/<primary>/<TIER>/<procstring-vN>/<counter>/<GUID>.root``, grouped in
  blocks ``<dataset>#<uuid>`` [files_per_block]; files per dataset lognormal [files_median, files_sigma].
  Sizes are lognormal around a tier median (NANOAOD ~1 GB, MINIAOD ~2.5 GB, AOD/RAW ~3-3.6 GB)
  [TierSpec.size_gb, size_sigma] with a Pareto tail [size_tail_frac]; the last file of a block is a
  partial merge, smaller.
- Analysis campaigns: a user (heavy-tailed activity) picks a dataset by popularity x tier preference
  [TierSpec.analysis] and a contiguous slice of its files [campaign_files_median/sigma]; the campaign
  lasts one day [oneday_frac] or several [campaign_days]; on each active day [active_weekday/weekend]
  it submits a CRAB task reading the whole slice in a burst of jobs (minutes to hours), plus
  Poisson(rerun) same-day re-runs over the whole slice [rerun_full_frac] or part of it. ``rerun`` is
  the site's habit [SiteSpec.rerun] times the user's [lognormal, mean 1]: the calibration knob of the
  daily reuse ceiling (about 31 % for the Italian region, 43 % for the US region).
- One-off tasks read 1..oneoff_files_max files once, from datasets picked with a flattened popularity.
- Production: WMAgent tasks (Type production, SubmissionTool wmagent, 4-8 cores) at the T1s and big
  T2s [SiteSpec.production] read recent RAW / GEN-SIM / AOD(SIM) [TierSpec.production]; a reduction
  for caching must drop them.
- Jobs: remote AAA reads (ProtocolUsed Remote, InputSE another site's SE) [SiteSpec.remote_frac];
  failures (SuccessFlag 0, exit codes 8001, 8020/8021/8028 file errors -- more frequent remotely --,
  50660, 50664, ...) [SiteSpec.fail_rate], most resubmitted the same day [retry_frac]; records with
  null FileSize [null_size_frac]; parent-file reads [parent_frac].
- Each region has its submission peak hour; a record lives in the partition of the UTC day its job
  finished; partitions are ordered by finish time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.common.schema import RAW_AVRO_SCHEMA, RAW_FIELDS, partition_path
from smartcache.tasks.generate import corrupt as gen_corrupt
from smartcache.tasks.generate.encode import avro_file, json_gz_file
from smartcache.tasks.generate.names import to_date, to_day
from smartcache.tasks.generate.params import GeneratorError, GeneratorParams, RegionSpec, SiteSpec, TierSpec
from smartcache.tasks.generate.progress import Progress
from smartcache.tasks.generate.records import Identities, SiteVocab, build_part, build_records
from smartcache.tasks.generate.stats import daily_reuse, partition_counts, reuse_ceiling
from smartcache.tasks.generate.workload import RegionWorkload, Tasks
from smartcache.tasks.generate.world import DatasetWorld

__all__ = ["GenerateResult", "GeneratorError", "GeneratorParams", "RegionSpec", "SiteSpec", "TierSpec", "World",
           "CorruptPartition", "generate_day", "generate_logs", "month_window", "partition_counts",
           "daily_reuse", "reuse_ceiling", "main"]

FORMATS = ("avro", "json")
TAG_SYNC = 501
PART_RECORDS = 200_000         # a day with more records is written as several part files (bounded memory)
JOBS_PER_DAY = 10_000_000      # JobId = day * JOBS_PER_DAY + job number
COUNT_KEYS = ("records", "analysis_ok", "null_size", "failed", "production")


class World:
    """The synthetic CMS world of one (seed, scale, params): datasets, users, campaigns, sites."""

    def __init__(self, seed: int = 0, scale: float = 1.0, params: GeneratorParams | None = None):
        if not scale > 0:
            raise GeneratorError(f"scale must be positive, not {scale}")
        self.seed, self.scale, self.params = seed, scale, params or GeneratorParams()
        self.datasets = DatasetWorld(seed, scale, self.params)
        self.workloads = [RegionWorkload(self.datasets, r) for r in range(len(self.params.regions))]
        self.sites = SiteVocab(self.datasets)
        self.identities = Identities(self.workloads)

    def day(self, day: int) -> pa.Table:
        tasks = Tasks.concat([w.day_tasks(day) for w in self.workloads])
        return build_records(self.datasets, self.workloads, self.sites, self.identities, day, tasks)

    def parts(self, day: int, part_records: int | None = None) -> Iterator[pa.Table]:
        """The day's records as part files of about ``part_records`` records (None: one part, which
        is ``day(day)``). Parts are built one after the other, so memory is bounded by one part:
        tasks are shared out by dataset (so each dataset's files are drawn for one part only);
        job and task ids stay unique within the day."""
        tasks = Tasks.concat([w.day_tasks(day) for w in self.workloads])
        n_parts = max(1, -(-int(tasks.n.sum()) // part_records)) if part_records else 1
        if n_parts == 1:
            yield build_records(self.datasets, self.workloads, self.sites, self.identities, day, tasks)
            return
        index = np.arange(len(tasks))
        job_base = 0
        for shard in range(n_parts):
            share = index[tasks.uid % n_parts == shard]
            table, used = build_part(self.datasets, self.workloads, self.sites, self.identities, day,
                                     tasks.take(share), shard=shard, task_index=share, job_base=job_base)
            job_base += used
            if job_base >= JOBS_PER_DAY:
                raise GeneratorError(f"more than {JOBS_PER_DAY:,} jobs on one day: scale {self.scale} is too large")
            yield table


@functools.lru_cache(maxsize=2)
def _world(seed: int, scale: float, params: GeneratorParams) -> World:
    """Per-process world, reused across the days a worker generates (its caches are bounded)."""
    return World(seed, scale, params)


def _as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as e:
        raise GeneratorError(f"not a date (YYYY-MM-DD): {value!r}") from e


def generate_day(date: dt.date | str, *, seed: int = 0, scale: float = 1.0, params: GeneratorParams | None = None,
                 world: World | None = None) -> pa.Table:
    """The records of one UTC day as a table with RAW_ARROW_SCHEMA (pass ``world`` to reuse caches)."""
    world = world or _world(seed, scale, params or GeneratorParams())
    return world.day(to_day(_as_date(date)))


def month_window(months: int, end: tuple[int, int] | str | None = None,
                 today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """(first day, last day) of ``months`` calendar months ending with ``end`` (default: last full month)."""
    if months < 1:
        raise GeneratorError(f"months must be at least 1, not {months}")
    if end is None:
        first_this = (today or dt.date.today()).replace(day=1)
        last = first_this - dt.timedelta(days=1)
        year, month = last.year, last.month
    elif isinstance(end, str):
        try:
            year, month = (int(x) for x in end.split("-"))
        except ValueError as e:
            raise GeneratorError(f"--end must be YYYY-MM, not {end!r}") from e
    else:
        year, month = end
    if not (1 <= month <= 12 and 1970 <= year <= 9999):
        raise GeneratorError(f"--end must be a valid YYYY-MM, not {year}-{month}")
    index = year * 12 + month - 1 - (months - 1)
    start = dt.date(index // 12, index % 12 + 1, 1)
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    return start, nxt - dt.timedelta(days=1)


@dataclass(frozen=True)
class CorruptPartition:
    path: str            # relative to the output folder
    kind: str
    detail: str
    records: int         # records generated for the partition before it was damaged


@dataclass
class GenerateResult:
    out: Path
    fmt: str
    start: dt.date
    end: dt.date
    partitions: list[Path]
    records: int
    counts: dict[str, int]
    corrupt: list[CorruptPartition]
    manifest: Path
    elapsed: float
    workers: int = 1
    per_partition: list[dict] = field(default_factory=list, repr=False)


def _write_day(job: tuple) -> list[dict]:
    """Generate, encode, maybe damage and write one day's part files (runs in a worker process)."""
    out, day, fmt, codec, level, seed, scale, params, damage, part_records = job
    world = _world(seed, scale, params)
    return [_write_part(out, day, k, table, fmt, codec, level, seed, damage if k == 0 else None)
            for k, table in enumerate(world.parts(day, part_records))]


def _write_part(out: str, day: int, part: int, table: pa.Table, fmt: str, codec: str, level: int, seed: int,
                damage: tuple[str, int] | None) -> dict:
    date = to_date(day)
    rel = partition_path(date.year, date.month, date.day, fmt, part)
    sync = np.random.default_rng([seed, TAG_SYNC, day] + ([part] if part else [])).bytes(16)
    fields = [(n, t) for n, t, _ in RAW_FIELDS]
    enc = avro_file(table, RAW_AVRO_SCHEMA, sync, codec=codec, level=level) if fmt == "avro" \
        else json_gz_file(table, fields, level=level)
    data, detail = enc.data, None
    if damage is not None:
        kind, ordinal = damage
        data, detail = (gen_corrupt.damage_avro(enc, table, kind, ordinal, sync, codec) if fmt == "avro"
                        else gen_corrupt.damage_json(enc, table, kind, ordinal, level))
    path = Path(out) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return {"path": rel, "date": date.isoformat(), **partition_counts(table), "bytes": len(data),
            "damage": None if damage is None else {"kind": damage[0], "detail": detail}}


def _days(months: int, end, start, days) -> list[int]:
    first, last = month_window(months, end)
    if start is not None:
        first = _as_date(start)
    if days is not None:
        if days < 1:
            raise GeneratorError(f"days must be at least 1, not {days}")
        last = first + dt.timedelta(days=days - 1)
    if last < first:
        raise GeneratorError(f"empty window: {first} .. {last}")
    return list(range(to_day(first), to_day(last) + 1))


def generate_logs(out: Path, months: int = 1, end: tuple[int, int] | str | None = None, fmt: str = "avro",
                  scale: float = 1.0, seed: int = 0, corrupt: int = 0, progress: bool = False,
                  params: GeneratorParams | None = None, *, start: dt.date | str | None = None,
                  days: int | None = None, workers: int | None = None, codec: str = "deflate",
                  level: int = 1, part_records: int | None = PART_RECORDS) -> GenerateResult:
    """Write daily raw partitions for ``months`` calendar months ending at ``end`` (or ``days`` days
    from ``start``) under ``out``, with ``_manifest.json`` and, if ``corrupt``, ``_corrupt.json``.

    A day of more than ``part_records`` records (large scales) is written as several part files,
    ``part-00000``, ``part-00001``, ..., one at a time, so a worker's memory stays bounded (about
    150 MB + 3.5 KB per record of one part); ``corrupt`` damages the first part of a chosen day."""
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise GeneratorError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if codec not in ("deflate", "null"):
        raise GeneratorError(f"codec must be deflate or null, not {codec!r}")
    if not scale > 0:
        raise GeneratorError(f"scale must be positive, not {scale}")
    if part_records is not None and part_records < 1:
        raise GeneratorError(f"part records must be at least 1, not {part_records}")
    params = params or GeneratorParams()
    day_list = _days(months, end, start, days)
    if not 0 <= corrupt <= len(day_list):
        raise GeneratorError(f"--corrupt must be between 0 and the {len(day_list)} partitions, not {corrupt}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    damage = gen_corrupt.choose(seed, len(day_list), corrupt)
    jobs = [(str(out), d, fmt, codec, level, seed, scale, params, damage.get(i), part_records)
            for i, d in enumerate(day_list)]
    workers = workers or (min(2, os.cpu_count() or 1) if len(jobs) >= 8 else 1)
    rows = _run(jobs, workers, progress)
    result = _finish(out, fmt, codec, seed, scale, day_list, rows, t0, part_records)
    result.workers = workers
    return result


def _run(jobs: list[tuple], workers: int, progress: bool) -> list[dict]:
    rows: list[dict] = []
    with Progress(len(jobs), progress) as bar:
        if workers <= 1:
            for job in jobs:
                rows.extend(bar.done(_write_day(job)))
        else:
            ctx = multiprocessing.get_context("spawn")      # no fork of a process holding Arrow threads
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                # runs of consecutive days per worker keep its dataset caches warm
                chunk = max(1, min(7, len(jobs) // (4 * workers)))
                for day_rows in pool.map(_write_day, jobs, chunksize=chunk):
                    rows.extend(bar.done(day_rows))
    return rows


def _finish(out: Path, fmt: str, codec: str, seed: int, scale: float, day_list: list[int], rows: list[dict],
            t0: float, part_records: int | None) -> GenerateResult:
    totals = {k: sum(r[k] for r in rows) for k in COUNT_KEYS + ("analysis_ok_bytes", "bytes")}
    corrupt = [CorruptPartition(r["path"], r["damage"]["kind"], r["damage"]["detail"], r["records"])
               for r in rows if r["damage"]]
    manifest = {
        "generator": "smartcache.tasks.generate.task", "format": fmt, "codec": codec if fmt == "avro" else "gzip",
        "seed": seed, "scale": scale, "start": to_date(day_list[0]).isoformat(),
        "end": to_date(day_list[-1]).isoformat(), "days": len(day_list), "part_records": part_records,
        "categories": "records = analysis_ok + null_size + failed + production",
        "totals": totals, "partitions": [{k: v for k, v in r.items() if k != "damage"} for r in rows],
        "corrupt": [c.path for c in corrupt],
    }
    path = out / "_manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    corrupt_path = out / "_corrupt.json"
    if corrupt:
        corrupt_path.write_text(json.dumps({"partitions": [c.__dict__ for c in corrupt]}, indent=1) + "\n")
    elif corrupt_path.exists():
        corrupt_path.unlink()                      # a clean rerun must not keep an old damage list
    return GenerateResult(out=out, fmt=fmt, start=to_date(day_list[0]), end=to_date(day_list[-1]),
                          partitions=[out / r["path"] for r in rows], records=totals["records"],
                          counts={k: totals[k] for k in COUNT_KEYS}, corrupt=corrupt, manifest=path,
                          elapsed=time.perf_counter() - t0, per_partition=rows)


def summary(result: GenerateResult) -> str:
    c = result.counts
    days = (result.end - result.start).days + 1
    files = "" if len(result.partitions) == days else f" in {len(result.partitions)} part files"
    size = sum(r["bytes"] for r in result.per_partition) / 2**30
    lines = [f"wrote {days} {result.fmt} partitions{files} ({result.start} .. {result.end}, {size:.2f} GiB) "
             f"to {result.out}",
             f"records {c['records']:,}: analysis ok {c['analysis_ok']:,}, null size {c['null_size']:,}, "
             f"failed {c['failed']:,}, production {c['production']:,}",
             f"{result.elapsed:.1f} s with {result.workers} worker(s); manifest {result.manifest.name}"]
    lines += [f"damaged {c.path}: {c.kind} ({c.detail})" for c in result.corrupt]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.generate", description=__doc__.splitlines()[0])
    ap.add_argument("--months", type=int, default=1)
    ap.add_argument("--end", help="last month generated, YYYY-MM (default: the previous full month)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--format", dest="fmt", choices=FORMATS, default="avro")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corrupt", type=int, default=0)
    ap.add_argument("--start", help="first day YYYY-MM-DD (overrides the month window start)")
    ap.add_argument("--days", type=int, help="number of days from the start")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--part-records", type=int, default=PART_RECORDS,
                    help="a day with more records is written as several part files (bounded memory)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    try:
        result = generate_logs(a.out, a.months, a.end, a.fmt, a.scale, a.seed, a.corrupt, not a.no_progress,
                               start=a.start, days=a.days, workers=a.workers, part_records=a.part_records)
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
