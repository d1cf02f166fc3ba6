"""Throughput of the cache simulator vs libCacheSim on the same trace, one core, measured in one run.

    python benchmarks/bench_cachesim.py [--requests 2000000] [--files 200000] [--fraction 0.05]
    python benchmarks/bench_cachesim.py --requests 1000000 --policies lru,arc,s3fifo,sieve
    python benchmarks/bench_cachesim.py --trace FILE.csv [--site S]

Our side: the compiled replay on pre-encoded arrays (the CSV read and the lfn -> id encoding are timed
separately, once per trace); Belady includes computing the next-access times. libCacheSim's side:
``cache.process_trace`` on the same trace in its oracleGeneral format (sizes in KiB), its fastest path.
Hit counts must agree for every policy both sides have (LRU, LFU, GDSF, ARC, S3-FIFO, SIEVE, Belady);
the benchmark says so. Each policy's rate is also printed against LRU's (ours) in the same run.
Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

from smartcache.tasks.common.trace import read_trace_csv
from smartcache.tasks.simulate import heuristics as HK
from smartcache.tasks.simulate import kernels as K
from smartcache.tasks.simulate.core import replay
from smartcache.tasks.simulate.oracle import in_units, write_oracle_general
from smartcache.tasks.simulate.synth import synthetic_trace

LCS_CLASS = {"lru": "LRU", "lfu": "LFU", "gdsf": "GDSF", "arc": "ARC", "s3fifo": "S3FIFO", "sieve": "Sieve",
             "belady": "Belady"}


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2_000_000)
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--trace", type=Path, help="a trace CSV instead of the synthetic one")
    ap.add_argument("--site", help="with --trace: only this site")
    ap.add_argument("--fraction", type=float, default=0.05, help="cache size as a fraction of the working set")
    ap.add_argument("--policies", default="lru,lfu,gdsf,arc,s3fifo,sieve,belady")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with contextlib.suppress(AttributeError, OSError):   # not Linux: measure unpinned
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core, for both sides

    if args.trace:
        t0 = time.perf_counter()
        trace = read_trace_csv(args.trace)
        print(f"read + encode {args.trace}: {time.perf_counter() - t0:.2f} s")
        if args.site:
            trace = trace.for_site(args.site)
    else:
        t0 = time.perf_counter()
        trace = synthetic_trace(args.requests, args.files, alpha=args.alpha, seed=1)
        print(f"synthetic trace: {time.perf_counter() - t0:.2f} s to generate and encode")
    kib = in_units(trace)                       # libCacheSim's view: KiB sizes; run ours on the same
    capacity = max(1, int(kib.working_set() * args.fraction))
    n = len(trace)
    print(f"{n} requests, {trace.n_obj} objects, cache {capacity} KiB = {args.fraction:.1%} of the working set")
    K.warm_up()
    HK.warm_up()

    try:
        import libcachesim as lcs
    except ImportError:
        lcs = None
        print("libcachesim is not installed: no baseline (pip install libcachesim)")
    tmp = Path(tempfile.mkdtemp())
    path = write_oracle_general(trace, tmp / "trace.oracleGeneral")

    print(f"{'policy':8} {'ours req/s':>12} {'vs LRU':>7} {'libCacheSim req/s':>18} {'ratio':>7} {'hits (ours)':>12} "
          f"{'hits (lcs)':>11} {'byte hit':>9}")
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    lru_rate = None
    for policy in ["lru"] + [p for p in policies if p != "lru"]:   # LRU first: the reference rate
        secs, status = best_of(args.repeat, lambda: replay(kib, policy, capacity))
        hits = int((status == K.HIT).sum())
        byte_hit = float(kib.size[status == K.HIT].sum() / kib.size.sum())
        theirs, their_hits = float("nan"), None
        if lcs is not None and policy in LCS_CLASS:
            reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)

            def run_lcs():
                cache = getattr(lcs, LCS_CLASS[policy])(capacity, default_ttl=0)
                reader.reset()
                return cache.process_trace(reader)
            lsecs, (miss_ratio, _) = best_of(args.repeat, run_lcs)
            theirs = n / lsecs
            their_hits = int(round((1.0 - miss_ratio) * n))
        ours = n / secs
        lru_rate = lru_rate or ours
        print(f"{policy:8} {ours:12,.0f} {ours / lru_rate:7.2f} {theirs:18,.0f} {ours / theirs:7.2f} {hits:12d} "
              f"{their_hits if their_hits is not None else '-':>11} {byte_hit:9.4f}")
        if their_hits is not None and their_hits != hits:
            print(f"  MISMATCH: {policy} hits differ from libCacheSim's", file=sys.stderr)
    path.unlink()
    tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
