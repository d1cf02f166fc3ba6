"""Does the learned policy beat the best heuristics? Trace families, held-out thirds, one run.

    python benchmarks/bench_policy.py [--families cms,scan,zipf,mix] [--workdir DIR] [--quick]
        [--no-lcs] [--plot bench_policy.png] [--json out.json]

Each family's trace (``cms``: the CMS log generator at default scale, 6 months, exported as a trace;
``scan``, ``zipf``, ``mix``: :mod:`smartcache.tasks.generate.traces`) is split in time: the model is trained
on the first two thirds (``smartcache train --trace ... --until D``, the same code) and every policy is
replayed over the whole trace, warm, counting only the last third (``simulate --from D``). Cache sizes are
1, 5 and 10 % of each site's working set in the counted third; each site has its own cache; figures are
pooled over sites (bytes hit / bytes requested). Policies: LRU, GDSF, ARC, S3FIFO, SIEVE (the project's
kernels, equal to libCacheSim request for request), Belady (the bound), the learned policies libCacheSim
ships (LRB, GLCache, 3L-Cache: run through its Python binding with sizes in KiB; LRB is slow, so on the
many-site ``cms`` family they run on the three busiest sites only and are pooled over those, said in the
table), and the model. Printed per family: byte and object hit ratios, the model's ratio to the best
heuristic at each size, the share of the LRU -> Belady byte-hit gap it closes (pooled figures), training
time and the scoring cost per request (features + TFLite + the kernel). ``mix`` is the family kept aside
while tuning.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HEURISTICS = ("lru", "gdsf", "arc", "s3fifo", "sieve")
LCS_LEARNED = {"lrb": "LRB", "glcache": "GLCache", "3lcache": "ThreeLCache"}
FRACTIONS = (0.01, 0.05, 0.10)


def family_trace(family: str, work: Path, quick: bool):
    from smartcache.tasks.common.trace import read_trace_csv
    from smartcache.tasks.generate.traces import write_trace
    path = work / f"{family}{'-quick' if quick else ''}.csv"
    if path.exists():
        return read_trace_csv(path), path
    t0 = time.perf_counter()
    if family == "cms":
        from smartcache.tasks.generate.task import generate_logs
        from smartcache.tasks.reduce.trace import export_trace
        raw = work / ("raw-quick" if quick else "raw")
        if not raw.exists():
            generate_logs(raw, months=2 if quick else 6, end="2026-10", progress=False)
        export_trace(path, raw=raw, progress=False)
    else:
        write_trace(family, path, seed=0, scale=0.25 if quick else 1.0)
    print(f"[{family}] trace written in {time.perf_counter() - t0:.0f} s: {path}", file=sys.stderr)
    return read_trace_csv(path), path


def split_day(trace) -> float:
    """UTC midnight of the day two thirds into the trace."""
    t = trace.ts[0] + (trace.ts[-1] - trace.ts[0]) * 2 / 3
    return float(np.floor(t / 86400.0) * 86400.0)


def train(trace, path: Path, store, name: str) -> tuple[object, float]:
    from smartcache.tasks.train.trace import register_trace_file, train_on_trace
    until = split_day(trace)
    t0 = time.perf_counter()
    model = train_on_trace(store, trace, name, register_trace_file(store, path, trace), until=until)
    return model, time.perf_counter() - t0


def lcs_hits(sub, cap: int, policy: str, tmp: Path) -> np.ndarray:
    import libcachesim as lcs

    from smartcache.tasks.simulate.oracle import write_oracle_general
    og = tmp / "site.oracleGeneral"
    if not og.exists():
        write_oracle_general(sub, og)
    reader = lcs.TraceReader(str(og), lcs.TraceType.ORACLE_GENERAL_TRACE)
    cache = getattr(lcs, LCS_LEARNED[policy])(max(1, cap // 1024), default_ttl=0)
    return np.fromiter((cache.get(r) for r in reader), dtype=bool, count=len(sub))


def run_family(family: str, work: Path, store, quick: bool, use_lcs: bool) -> dict:
    from smartcache.tasks.simulate import kernels as K
    from smartcache.tasks.simulate.core import replay
    from smartcache.tasks.simulate.model import load_scorer, score_requests

    trace, path = family_trace(family, work, quick)
    until = split_day(trace)
    model, train_s = train(trace, path, store, f"bench-{family}")
    scorer = load_scorer(store, model.ref)
    sites = trace.site_names()
    busiest = sorted(sites, key=lambda s: -int(np.count_nonzero(trace.site == trace.sites.index(s))))[:3]
    lcs_sites = set(busiest if len(sites) > 3 else sites) if use_lcs else set()
    pols = [*HEURISTICS, "belady", *(LCS_LEARNED if use_lcs else ()), "model"]
    acc = {(p, f): np.zeros(4) for p in pols for f in FRACTIONS}     # bytes hit, bytes, hits, requests
    lcs_acc = {(p, f): np.zeros(4) for p in ("belady", "model", *HEURISTICS) for f in FRACTIONS}
    score_s = kernel_s = 0.0
    for site in sites:
        sub = trace.for_site(site)
        counted = sub.ts >= until
        if not counted.any():
            continue
        t0 = time.perf_counter()
        scores = score_requests(scorer, sub)
        score_s += time.perf_counter() - t0
        nxt = K.next_access(sub.obj)
        ws = sub.take(counted).working_set()
        with tempfile.TemporaryDirectory() as tmp:
            for f in FRACTIONS:
                cap = int(ws * f)
                for p in pols:
                    if p in LCS_LEARNED:
                        if site not in lcs_sites:
                            continue
                        hit = lcs_hits(sub, cap, p, Path(tmp))
                    else:
                        t0 = time.perf_counter()
                        st = replay(sub, "model" if p == "model" else p, cap, scores=scores if p == "model" else None,
                                    nxt=nxt)
                        if p == "model":
                            kernel_s += time.perf_counter() - t0
                        hit = st == K.HIT
                    row = np.array([sub.size[counted & hit].sum(), sub.size[counted].sum(),
                                    np.count_nonzero(counted & hit), np.count_nonzero(counted)], np.float64)
                    acc[(p, f)] += row
                    if site in lcs_sites and (p, f) in lcs_acc:
                        lcs_acc[(p, f)] += row
    n_req = len(trace)
    return {"family": family, "requests": n_req, "sites": len(sites), "until": _iso(until),
            "train_rows": model.metrics["n_train"] + model.metrics["n_val"], "train_s": round(train_s, 1),
            "auc_1d": model.metrics.get("auc_1d"), "score_us_per_request": 1e6 * score_s / n_req,
            "kernel_us_per_request": 1e6 * kernel_s / (n_req * len(FRACTIONS)),
            "lcs_sites": sorted(lcs_sites),
            "bhr": {f"{p}@{f:g}": a[0] / a[1] for (p, f), a in acc.items() if a[1]},
            "ohr": {f"{p}@{f:g}": a[2] / a[3] for (p, f), a in acc.items() if a[3]},
            "bhr_lcs_sites": {f"{p}@{f:g}": a[0] / a[1] for (p, f), a in lcs_acc.items() if a[1]}}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).date().isoformat()


def report(r: dict) -> None:
    print(f"\n== {r['family']}: {r['requests']:,} requests, {r['sites']} site(s); trained on requests before "
          f"{r['until']} ({r['train_rows']:,} rows, {r['train_s']:.0f} s, AUC(read again within 1 d) "
          f"{r['auc_1d']}); scoring {r['score_us_per_request']:.2f} us/request + kernel "
          f"{r['kernel_us_per_request']:.2f} us/request")
    pols = sorted({k.split("@")[0] for k in r["bhr"]}, key=_order)
    print(f"{'policy':10}" + "".join(f"{f'{f:.0%} BHR':>11}{'OHR':>7}" for f in FRACTIONS))
    for p in pols:
        cells = "".join(f"{r['bhr'].get(f'{p}@{f:g}', float('nan')):11.4f}{r['ohr'].get(f'{p}@{f:g}', float('nan')):7.3f}"
                        for f in FRACTIONS)
        note = f"  (on {', '.join(r['lcs_sites'])} only)" if p in LCS_LEARNED and r["sites"] > 3 else ""
        print(f"{p:10}{cells}{note}")
    for f in FRACTIONS:
        b = {p: r["bhr"][f"{p}@{f:g}"] for p in pols if f"{p}@{f:g}" in r["bhr"]}
        best_h = max(HEURISTICS, key=lambda p: b[p])
        best_l = max((p for p in LCS_LEARNED if p in b), key=lambda p: b[p], default=None)
        gap = (b["model"] - b["lru"]) / (b["belady"] - b["lru"]) if b["belady"] > b["lru"] else float("nan")
        line = (f"  {f:.0%}: model {b['model']:.4f} = {b['model'] / b[best_h]:.3f}x the best heuristic "
                f"({best_h} {b[best_h]:.4f}); closes {gap:.0%} of the LRU->Belady gap")
        if best_l is not None:
            lb = r["bhr_lcs_sites"] if r["sites"] > 3 else b
            mk = lb.get(f"model@{f:g}", b["model"]) if r["sites"] > 3 else b["model"]
            line += f"; vs {best_l} {b[best_l]:.4f}: {mk / b[best_l]:.3f}x"
        print(line)


def _order(p: str) -> tuple:
    order = [*HEURISTICS, *LCS_LEARNED, "belady", "model"]
    return (order.index(p) if p in order else 99, p)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from smartcache.tasks.simulate.report import policy_color
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.8), squeeze=False)
    for ax, r in zip(axes[0], results):
        for p in sorted({k.split("@")[0] for k in r["bhr"]}, key=_order):
            ys = [r["bhr"].get(f"{p}@{f:g}") for f in FRACTIONS]
            ax.plot([100 * f for f in FRACTIONS], ys, marker="o", label=p, color=policy_color(p),
                    linewidth=2.5 if p == "model" else 1.2, linestyle="--" if p == "belady" else "-")
        ax.set_title(f"{r['family']} ({r['requests'] / 1e6:.2f}M requests)")
        ax.set_xlabel("cache size, % of the working set")
        ax.set_ylabel("byte hit ratio (last third)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="cms,scan,zipf,mix")
    ap.add_argument("--workdir", type=Path, default=Path("bench-policy"))
    ap.add_argument("--quick", action="store_true", help="smaller traces (a quarter, two CMS months)")
    ap.add_argument("--no-lcs", dest="lcs", action="store_false", help="skip libCacheSim's learned policies")
    ap.add_argument("--plot", type=Path, default=Path("bench_policy.png"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    from smartcache.catalog import open_store
    store = open_store(f"sqlite:///{args.workdir.resolve()}/bench.db", migrate=True)
    results = []
    for family in [f for f in args.families.split(",") if f]:
        r = run_family(family, args.workdir, store, args.quick, args.lcs)
        report(r)
        results.append(r)
    store.close()
    plot(results, args.plot)
    print(f"\nplot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
