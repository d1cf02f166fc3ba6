"""Does the model make a site's cache better than LRU? Byte hit ratios on held-out days, measured in one run.

    python benchmarks/bench_model_vs_lru.py [--workdir DIR] [--months 6] [--end 2026-10] [--scale 1] \
        [--raw DIR] [--plot out.png] [--seed 1] [--data-seed 0]

The whole chain on a generated dataset (default: 6 months at scale 1, as the quickstart): generate raw logs
(skipped when ``--raw`` or ``DIR/raw`` has them) -> reduce -> features (daily table + request-level rows,
horizon 3 days) -> train -> replay of the held-out days per site: from the model's first validation day
(no training label reaches it) to the last day, the 7 days before warming the caches, exactly as the
pipeline's evaluate node does. Every policy runs in the same simulator on the exact trace exported from
the raw logs; the model's features are built from that trace, past-only. Cache sizes: the quickstart's
(T2_IT_Pisa 3 TB, T2_IT_Bari 1.5 TB, T2_US_UCSD 2.5 TB, T1_US_FNAL 4 TB) and 1 %, 5 %, 10 % of each
site's held-out working set (all sites). Prints byte hit ratios per policy and size (all sites together,
byte-weighted) with the ratio to LRU and to the strongest heuristic at each size (LRU, LFU or GDSF),
per-site figures at the quickstart sizes, the share of the LRU -> Belady gap the model closes,
timings; writes the plot (byte hit ratio vs cache size).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

QUICKSTART_SIZES = {"T2_IT_Pisa": 3 * 10**12, "T2_IT_Bari": 15 * 10**11, "T2_US_UCSD": 25 * 10**11,
                    "T1_US_FNAL": 4 * 10**12}
POLICIES = ("lru", "lfu", "gdsf", "belady")
HEURISTICS = ("lru", "lfu", "gdsf")         # the baselines a site could run today
LABELS = ("site", "1%", "5%", "10%")
WARMUP_DAYS = 7


def _step(name: str, t0: float, timings: dict) -> float:
    timings[name] = time.perf_counter() - t0
    print(f"  {name}: {timings[name]:.1f} s", file=sys.stderr)
    return time.perf_counter()


def prepare(work: Path, raw: Path, months: int, end: str, scale: float, seed: int, timings: dict,
            data_seed: int = 0):
    """Raw logs, reduced partitions, features and a trained model in ``work``; returns (store, model)."""
    from smartcache.catalog import open_store
    from smartcache.tasks.features.task import build_features
    from smartcache.tasks.generate.task import generate_logs
    from smartcache.tasks.reduce.readers import list_partitions
    from smartcache.tasks.reduce.task import reduce_partitions
    from smartcache.tasks.train.model import FitConfig
    from smartcache.tasks.train.task import train

    t0 = time.perf_counter()
    if not list(raw.rglob("part-*")):
        generate_logs(raw, months=months, end=end, scale=scale, seed=data_seed, workers=2)
        t0 = _step("generate", t0, timings)
    store = open_store(f"sqlite:///{work}/catalog.db", migrate=True)
    if not store.list_datasets(kind="reduced"):
        reduce_partitions(list_partitions(raw), work / "data", store, None)
        t0 = _step("reduce", t0, timings)
    feats = build_features("reduced", work / "data", store)
    t0 = _step("features", t0, timings)
    result = train(store, feats.dataset, "cachenet", cfg=FitConfig(seed=seed))
    _step("train", t0, timings)
    return store, result


def held_out(work: Path, raw: Path, model, timings: dict):
    """The exact trace of the held-out window plus warm-up days, and the epoch second counting starts."""
    from smartcache.tasks.evaluate.task import load_held_out
    from smartcache.tasks.reduce.trace import raw_partitions

    t0 = time.perf_counter()
    first = date.fromisoformat(model.metrics["val_days"][0])
    last = raw_partitions(raw)[-1][0]
    out = work / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    trace, count_from = load_held_out(out, None, raw, first, last, WARMUP_DAYS)
    _step("export held-out trace", t0, timings)
    return trace, count_from, (first, last)


def report(ev, model_policy: str) -> None:
    table = ev.summary["byte_hit_ratio"]
    names = [*POLICIES, model_policy]
    print("\nbyte hit ratio on held-out days, all sites (ratio to LRU in brackets); the strongest baseline is the")
    print("best heuristic at that size (LRU, LFU or GDSF: Belady is the oracle bound, not a baseline)")
    print(f"{'cache size':<12}" + "".join(f"{p.split(':')[0]:>16}" for p in names) + "   model / strongest")
    for label in LABELS:
        row = table.get(label)
        if not row:
            continue
        base = row["lru"]
        best = max(HEURISTICS, key=lambda p: row[p])
        print(f"{label:<12}" + "".join(f"{row[p]:>8.4f} ({row[p] / base:5.3f})" for p in names)
              + f"   {row[model_policy] / row[best]:.3f} vs {best}")
    print("\nper site at the quickstart cache sizes")
    print(f"{'site':<14}{'size':>8}" + "".join(f"{p.split(':')[0]:>10}" for p in names) + f"{'model/LRU':>11}"
          + "   model / strongest")
    rows = [r for r in ev.results if r.site != "*" and r.extra.get("size_label") == "site"]
    for site in sorted({r.site for r in rows}):
        by = {r.policy: r for r in rows if r.site == site}
        v = {p: by[p].overall.byte_hit_ratio for p in names}
        best = max(HEURISTICS, key=lambda p: v[p])
        print(f"{site:<14}{by['lru'].cache_size / 1e12:>6.1f}TB" + "".join(f"{v[p]:>10.4f}" for p in names)
              + f"{v[model_policy] / v['lru']:>11.3f}   {v[model_policy] / v[best]:.3f} vs {best}")
    gap = ev.summary["gap_closed"].get(model_policy)
    print(f"\nshare of the LRU -> Belady gap the model closes (mean over sites and sizes): "
          f"{gap:.3f}" if gap is not None else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("bench-model-vs-lru"))
    ap.add_argument("--raw", type=Path, help="existing raw partitions (default: WORKDIR/raw, generated if empty)")
    ap.add_argument("--months", type=int, default=6)
    ap.add_argument("--end", default="2026-10")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1, help="training seed")
    ap.add_argument("--data-seed", type=int, default=0, help="generator seed (when logs are generated)")
    ap.add_argument("--plot", type=Path, help="PNG (default: WORKDIR/evaluation/byte_hit_ratio.png)")
    args = ap.parse_args(argv)
    from smartcache.tasks.evaluate.task import evaluate
    from smartcache.tasks.score.scorer import load_scorer

    work = args.workdir.absolute()
    work.mkdir(parents=True, exist_ok=True)
    raw = (args.raw or work / "raw").absolute()
    timings: dict[str, float] = {}
    print(f"data: {raw}; work: {work}", file=sys.stderr)
    store, trained = prepare(work, raw, args.months, args.end, args.scale, args.seed, timings, args.data_seed)
    model = trained.model
    trace, count_from, (first, last) = held_out(work, raw, model, timings)
    policy = f"model:{model.ref}"
    t0 = time.perf_counter()
    ev = evaluate(trace, work / "evaluation", policies=",".join(POLICIES), site_sizes=QUICKSTART_SIZES,
                  scorers={policy: load_scorer(store, model.ref)}, eval_from=count_from)
    _step("simulate", t0, timings)
    plot = ev.files["plot"]
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        args.plot.write_bytes(plot.read_bytes())
        plot = args.plot
    m = model.metrics
    print(f"model {model.ref}: trained on {m['train_days'][0]}..{m['train_days'][1]} ({m['n_train']} request rows), "
          f"AUC {m['auc']:.3f} on {m['val_days'][0]}..{m['val_days'][1]}, decay {model.params.get('decay_days')} d")
    print(f"held-out window {first}..{last} ({ev.summary['requests']} requests counted, "
          f"{WARMUP_DAYS} warm-up days before)")
    report(ev, policy)
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"plot: {plot}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
