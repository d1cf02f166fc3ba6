"""Raw-log generator throughput: record generation, and the column-wise Avro / JSON writers against
the record-at-a-time baselines (fastavro.writer, json.dumps + gzip) measured in the same run. The
baselines write dicts made beforehand (that conversion is reported apart, not charged to them).

    python benchmarks/bench_generate.py [--days 5] [--scale 1]

CPU seconds (process time) are reported, so a busy machine distorts the figures less.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import json
import time

import fastavro

from smartcache.tasks.common.schema import RAW_AVRO_SCHEMA, RAW_FIELDS
from smartcache.tasks.generate.encode import avro_file, json_gz_file
from smartcache.tasks.generate.task import World


def _cpu(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    world = World(seed=0, scale=a.scale)
    first = dt.date(2026, 6, 1)
    world.day((first - dt.date(1970, 1, 1)).days - 1)           # warm the dataset caches
    days = [(first - dt.date(1970, 1, 1)).days + i for i in range(a.days)]
    t_gen, tables = _cpu(lambda: [world.day(d) for d in days])
    n = sum(t.num_rows for t in tables)
    fields = [(name, typ) for name, typ, _ in RAW_FIELDS]
    sync = bytes(16)
    t_avro, sizes = _cpu(lambda: [len(avro_file(t, RAW_AVRO_SCHEMA, sync).data) for t in tables])
    # the record-at-a-time writers take dicts: make them outside their timed region (reported apart)
    t_dicts, dicts = _cpu(lambda: [t.to_pylist() for t in tables])
    parsed = fastavro.parse_schema(RAW_AVRO_SCHEMA)

    def fastavro_baseline():
        out = []
        for recs in dicts:
            buf = io.BytesIO()
            fastavro.writer(buf, parsed, recs, codec="deflate", codec_compression_level=1,
                            sync_marker=sync, sync_interval=64_000)
            out.append(len(buf.getvalue()))
        return out

    t_fa, fa_sizes = _cpu(fastavro_baseline)
    t_json, _ = _cpu(lambda: [json_gz_file(t, fields) for t in tables])

    def json_baseline():
        return [gzip.compress("".join(json.dumps(r) + "\n" for r in recs).encode(), 1, mtime=0) for recs in dicts]

    t_jb, _ = _cpu(json_baseline)
    print(f"{a.days} days at scale {a.scale}: {n:,} records ({n / a.days:,.0f}/day); CPU seconds, "
          f"baselines on ready dicts (Arrow -> dicts: {t_dicts:.2f} s, not counted)")
    print(f"generate records      {t_gen:6.2f} s  {n / t_gen:10,.0f} rec/s")
    print(f"avro (column-wise)    {t_avro:6.2f} s  {n / t_avro:10,.0f} rec/s  {sum(sizes) / n:6.1f} B/rec")
    print(f"avro (fastavro.writer){t_fa:6.2f} s  {n / t_fa:10,.0f} rec/s  {sum(fa_sizes) / n:6.1f} B/rec"
          f"   column-wise / fastavro (strongest baseline): x{t_fa / t_avro:.1f}"
          f" (x{(t_fa + t_dicts) / t_avro:.1f} from Arrow)")
    print(f"json.gz (column-wise) {t_json:6.2f} s  {n / t_json:10,.0f} rec/s")
    print(f"json.gz (json.dumps)  {t_jb:6.2f} s  {n / t_jb:10,.0f} rec/s   column-wise / json.dumps+gzip: "
          f"x{t_jb / t_json:.1f} (x{(t_jb + t_dicts) / t_json:.1f} from Arrow)")
    per_day = (t_gen + t_avro) / a.days
    print(f"=> 6 months (184 days) of Avro: ~{184 * per_day:.0f} CPU-s, ~{92 * per_day:.0f} s on 2 idle cores")


if __name__ == "__main__":
    main()
