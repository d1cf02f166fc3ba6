"""Byte hit ratio of a real XCache on a short replayed trace, next to the simulator's figure for the
same trace and cache size, measured in one run.

    python benchmarks/bench_site.py [--files 40] [--requests 200] [--cache-frac 0.3] [--segment 20] [--json]

A real XRootD origin and XCache (Debian's 5.5) run on 127.0.0.1. The trace (Zipf popularity over files
of real bytes) is read, file by file in full, through the cache; what the cache did not serve is what the
origin read, counted from the origin's own read log (``ofs.trace read``): byte hit ratio =
1 - origin bytes / requested bytes.

Two scenarios:
- ``admit-all``: XCache caches every file and enforces its byte budget (``pfc.diskusage ... files``) the
  only way it can: a purge that removes the least recently used files down to the budget. XCache 5.5
  purges every >= 60 s and 1 s after a start, so the replay restarts XCache every ``--segment`` requests
  (one purge interval of the compressed trace). The simulator's LRU evicts on every insertion instead.
- ``list+agent``: the decision plugin admits only a placement list (the trace's most requested files
  that fit the budget: the list a perfect model would push), the site agent pre-places it, then the
  trace is replayed. The simulator's figure: its ``model`` policy with score 1 for listed files, 0
  otherwise, warmed up with the list (warm-up requests not counted).

``emulated`` is a 20-line model of XCache's behaviour (LRU purged to the budget every segment; sizes in
whole cache blocks): it shows how much of the real-vs-simulator gap is the purge schedule.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np

from smartcache.tasks.common.trace import make_trace
from smartcache.tasks.simulate.core import simulate
from smartcache.tasks.site import xcache as X
from smartcache.tasks.site.agent import place_files, read_through
from smartcache.tasks.site.contents import scan_cache
from smartcache.tasks.site.plugin import build_plugin, decisionlib_line

BLOCK = 128 * 1024


def make_workload(n_files: int, n_requests: int, mean_size: int, zipf: float, seed: int):
    rng = np.random.default_rng(seed)
    lfns = [f"/store/mc/Bench26/Sample{i % 7}/AODSIM/v1/{i:05d}.root" for i in range(n_files)]
    sizes = {lfn: int(s) for lfn, s in zip(lfns, rng.uniform(0.4, 1.6, n_files) * mean_size)}
    weights = 1.0 / np.arange(1, n_files + 1) ** zipf
    order = rng.permutation(n_files)                 # popularity is not the file index
    picks = rng.choice(n_files, size=n_requests, p=weights / weights.sum())
    return sizes, [lfns[order[p]] for p in picks]


def blocks(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def placement_list(seq: list[str], sizes: dict[str, int], capacity: int) -> list[str]:
    chosen, used = [], 0
    for lfn, _ in Counter(seq).most_common():
        if used + blocks(sizes[lfn]) <= capacity:
            chosen.append(lfn)
            used += blocks(sizes[lfn])
    return chosen


def emulate(seq, sizes, capacity, segment, admit=None, warm=()) -> float:
    """XCache's behaviour: admit (all or a list), purge LRU down to ``capacity`` every ``segment``."""
    cache = OrderedDict((lfn, blocks(sizes[lfn])) for lfn in warm)
    hit = req = 0
    for i, lfn in enumerate(seq, 1):
        req += sizes[lfn]
        if lfn in cache:
            hit += sizes[lfn]
            cache.move_to_end(lfn)
        elif admit is None or lfn in admit:
            cache[lfn] = blocks(sizes[lfn])
        if segment and i % segment == 0:
            while sum(cache.values()) > capacity:
                cache.popitem(last=False)
    return hit / req


def simulator(seq, sizes, capacity, policy, listed=None) -> float:
    warm = list(listed or [])
    lfns = warm + seq
    ts = np.arange(len(lfns), dtype=np.float64) * 60.0
    scores = None if listed is None else np.array([1.0 if x in set(listed) else 0.0 for x in lfns])
    trace = make_trace(ts, lfns, [sizes[x] for x in lfns], "T2_XX_Bench", scores=scores)
    r = simulate(trace, policy, capacity, count_from=float(ts[len(warm)]) if warm else None)
    return r.overall.byte_hit_ratio


def replay_real(origin, cache, seq, sizes, segment):
    """Read the trace through XCache; returns (byte hit ratio, the cache server, restarts, seconds,
    the most bytes the cache held before a purge)."""
    mark, restarts, t0, peak = X.log_size(origin), 0, time.perf_counter(), 0
    data_dir = Path(cache.config).parent / "data"
    try:
        for i, lfn in enumerate(seq, 1):
            read_through(cache.url, lfn)
            if segment and i % segment == 0 and i < len(seq):
                peak = max(peak, scan_cache(data_dir, use_print=False).n_bytes)
                since = X.log_size(cache)
                cache = X.restart(cache)               # XCache purges 1 s after it starts
                X.wait_for_log(cache, r"Purge\(\) Finished", since, 30)
                restarts += 1
    except BaseException:
        cache.stop()                                   # a restarted server the caller does not know
        raise
    served_by_origin = X.origin_traffic(origin, mark).total_bytes
    requested = sum(sizes[x] for x in seq)
    return 1 - served_by_origin / requested, cache, restarts, time.perf_counter() - t0, peak


def run(args) -> dict:
    sizes, seq = make_workload(args.files, args.requests, args.mean_size, args.zipf, args.seed)
    unique = sum(sizes.values())
    capacity = int(unique * args.cache_frac)
    listed = placement_list(seq, sizes, capacity)
    base = Path(tempfile.mkdtemp(prefix="smartcache-bench-site-"))
    base.chmod(0o755)                                # the xrootd user must reach it when we are root
    servers = []
    try:
        X.make_files(base / "origin" / "data", sizes, seed=args.seed)
        origin = X.start_origin(base / "origin", "bench-origin")
        servers.append(origin)
        settings = X.CacheSettings(cache_bytes=capacity, blocksize=f"{BLOCK // 1024}k")
        cache = X.start_cache(base / "all", f"127.0.0.1:{origin.port}", "bench-all", settings=settings)
        servers.append(cache)
        real_all, cache, restarts, secs_all, peak = replay_real(origin, cache, seq, sizes, args.segment)
        servers.append(cache)

        list_path = base / "list.txt"
        list_path.write_text("# smartcache placement site=T2_XX_Bench model=oracle:1\n" + "\n".join(listed) + "\n")
        list_path.chmod(0o644)
        lib = build_plugin(base / "plugin")
        cache2 = X.start_cache(base / "list", f"127.0.0.1:{origin.port}", "bench-list", settings=settings,
                               decisionlib=decisionlib_line(lib, list_path=list_path))
        servers.append(cache2)
        placed = place_files(listed, cache2.url, concurrency=4, progress=False)
        real_list, cache2, _, secs_list, _ = replay_real(origin, cache2, seq, sizes, 0)
    finally:
        for s in reversed(servers):
            s.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return {
        "files": args.files, "requests": args.requests, "unique_bytes": unique, "cache_bytes": capacity,
        "segment": args.segment, "restarts": restarts, "peak_bytes": peak, "listed_files": len(listed),
        "placed_bytes": placed.bytes_read,
        "admit-all": {"real": real_all, "emulated": emulate(seq, sizes, capacity, args.segment),
                      "sim_lru": simulator(seq, sizes, capacity, "lru"),
                      "sim_gdsf": simulator(seq, sizes, capacity, "gdsf"),
                      "sim_belady": simulator(seq, sizes, capacity, "belady"), "seconds": secs_all},
        "list+agent": {"real": real_list,
                       "emulated": emulate(seq, sizes, capacity, 0, admit=set(listed), warm=listed),
                       "sim_model": simulator(seq, sizes, capacity, "model", listed=listed),
                       "seconds": secs_list},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--mean-size", type=int, default=2_500_000, help="bytes")
    ap.add_argument("--zipf", type=float, default=0.9)
    ap.add_argument("--cache-frac", type=float, default=0.3, help="cache size / unique bytes")
    ap.add_argument("--segment", type=int, default=20, help="requests between XCache purges")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the servers' folder")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    missing = X.missing_packages()
    if missing:
        print(f"needs Debian packages: {' '.join(missing)}", file=sys.stderr)
        return 1
    r = run(args)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    a, b = r["admit-all"], r["list+agent"]
    print(f"trace: {r['requests']} requests over {r['files']} files ({r['unique_bytes'] / 1e6:.0f} MB unique); "
          f"cache {r['cache_bytes'] / 1e6:.0f} MB ({args.cache_frac:.0%}); purge every {r['segment']} requests "
          f"({r['restarts']} restarts);\n       XCache held up to {r['peak_bytes'] / 1e6:.0f} MB before a purge "
          f"(the simulator never exceeds {r['cache_bytes'] / 1e6:.0f} MB)")
    print(f"{'scenario':12s} {'real XCache':>12s} {'emulated':>9s} {'simulator':>10s} {'real/sim':>9s}  sim policy")
    print(f"{'admit-all':12s} {a['real']:12.3f} {a['emulated']:9.3f} {a['sim_lru']:10.3f} "
          f"{a['real'] / a['sim_lru']:9.3f}  lru   (gdsf {a['sim_gdsf']:.3f}, belady {a['sim_belady']:.3f})")
    print(f"{'list+agent':12s} {b['real']:12.3f} {b['emulated']:9.3f} {b['sim_model']:10.3f} "
          f"{b['real'] / b['sim_model']:9.3f}  model (score 1 = listed; {r['listed_files']} files pre-placed, "
          f"{r['placed_bytes'] / 1e6:.0f} MB)")
    print(f"replay time: admit-all {a['seconds']:.1f} s (with restarts), list+agent {b['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
