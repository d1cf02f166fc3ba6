"""Avro decoders on the generator's files: the candidates for the reduce's Avro path, measured in one run.

    python benchmarks/bench_avro.py [--days 7] [--scale 1] [--data DIR]

Every candidate reads the same daily partitions into Arrow, projected to the reduce's 16 columns,
on one thread (``POLARS_MAX_THREADS=1``, DataFusion ``target_partitions=1``); CPU seconds (process
time) give records/s per core. "same" says whether its table equals the reference (the fastavro
path, column types cast to the raw schema's). Candidates:

- ours, column-wise: ``AvroReader`` with the numba block decoder (the reduce's path);
- ours, fastavro: ``AvroReader`` with fastavro decoding groups of good blocks (the previous path);
- fastavro rows only: ``fastavro.reader`` over the file, dicts, no Arrow (the floor of that path);
- polars ``read_avro`` and DataFusion ``read_avro``, when installed (whole-file readers: a damaged
  file fails as a whole, so they would still need our framing to keep the readable blocks).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")    # before polars is imported: one core each


def _cpu(fn, repeat: int = 3):
    best, out = None, None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        c = time.process_time() - t
        best = c if best is None else min(best, c)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--data", type=Path, help="existing Avro partitions (default: generated in a temp dir)")
    a = ap.parse_args(argv)
    import fastavro
    import pyarrow as pa

    from smartcache.tasks.generate.task import generate_logs
    from smartcache.tasks.reduce.avro import AvroReader
    from smartcache.tasks.reduce.readers import list_partitions
    from smartcache.tasks.reduce.report import REDUCE_COLUMNS, ReadReport, projected_schema

    tmp = None
    if a.data is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-avro-"))
        generate_logs(tmp, start="2026-04-01", days=a.days, scale=a.scale, seed=11)
        a.data = tmp
    files = list_partitions(a.data)
    schema = projected_schema(REDUCE_COLUMNS)
    cols = list(REDUCE_COLUMNS)

    def ours(columnar: bool):
        def run():
            out = []
            for p in files:
                with open(p, "rb") as fo:
                    out.extend(AvroReader(fo, schema, ReadReport(p, "avro"), 65536, columnar=columnar))
            return pa.Table.from_batches(out, schema=schema)
        return run

    def fastavro_rows():
        n = 0
        for p in files:
            with open(p, "rb") as fo:
                n += sum(1 for _ in fastavro.reader(fo))
        return n

    cands = {"ours, column-wise (numba)": ours(True), "ours, fastavro": ours(False),
             "fastavro rows only (no Arrow)": fastavro_rows}
    try:
        import polars as pl
        cands[f"polars {pl.__version__} read_avro"] = lambda: pa.concat_tables(
            [pl.read_avro(p, columns=cols).to_arrow() for p in files])
    except ImportError:
        print("polars not installed: skipped", file=sys.stderr)
    try:
        import datafusion
        ctx = datafusion.SessionContext(datafusion.SessionConfig().with_target_partitions(1))
        cands[f"datafusion {datafusion.__version__} read_avro"] = lambda: pa.concat_tables(
            [ctx.read_avro(p).select(*[datafusion.col(f"\"{c}\"") for c in cols]).to_arrow_table() for p in files])
    except ImportError:
        print("datafusion not installed: skipped", file=sys.stderr)

    results = {name: _cpu(fn) for name, fn in cands.items()}
    ref = results["ours, fastavro"][1]
    n = ref.num_rows
    size = sum(Path(p).stat().st_size for p in files)
    print(f"{len(files)} partitions, {n:,} records, {size / 2**20:.0f} MiB of deflate Avro; load "
          f"{os.getloadavg()[0]:.1f}; one thread each, best of 3")
    base = results["ours, fastavro"][0]
    for name, (cpu, out) in results.items():
        same = "-"
        if isinstance(out, pa.Table):
            try:
                same = "yes" if out.select(cols).cast(schema).equals(ref) else "NO"
            except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
                same = f"NO ({type(e).__name__})"
        print(f"  {name:36s} {cpu:7.2f} CPU s {n / cpu:>11,.0f} rec/s/core  x{base / cpu:5.1f} vs fastavro path"
              f"  same: {same}")
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
