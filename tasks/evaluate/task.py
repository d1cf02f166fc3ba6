"""DAG task: evaluate cache policies (and a model) by replaying held-out days per site.

Each site replays its own requests with its cache size from the catalog and with fractions of its
held-out working set (default 1 %, 5 %, 10 %), for LRU, LFU, GDSF, ARC, S3-FIFO, Belady and -- given a
scorer -- the model policy (see :mod:`smartcache.tasks.simulate.model`).

The counted window is the one of ``smartcache simulate --from`` (:mod:`smartcache.tasks.simulate.window`):
the whole trace is replayed, warm caches, and requests from the window's first day (00:00 UTC) on are
counted. The trace is the one given with ``--trace``, or the raw partitions from ``--warmup-days`` before
the window to its end, exported (exact, see :mod:`smartcache.tasks.reduce.trace`) into ``out/trace.csv``;
``smartcache simulate --trace out/trace.csv --from FIRST --site S --cache-size BYTES`` gives the same
figures. The summary says which requests were counted (``window``).

Writes into ``out``: ``metrics.parquet`` (one row per site x policy x cache size, overall and per day),
``metrics.json`` (the overall rows and a summary, see :mod:`.summary`), ``byte_hit_ratio.png``; registers
the table in the catalog as a dataset of kind ``evaluation``; given a model, it is the promotion gate: the
model goes to ``production`` only if its byte hit ratio at the sites' cache sizes beats LRU's and the best
other heuristic's (ARC, S3-FIFO, ... whichever were evaluated), else ``staging``, with the reason naming
the heuristic that won and by how much (``--no-gate`` only reports).

The held-out window: ``--start/--end``, else from the model's first validation day (``val_days`` in its
metrics) to the newest raw partition, else the last ``--holdout-days``.

    python -m smartcache.tasks.evaluate --catalog-url URL --run-id N --model NAME --out DATA/evaluation \
        [--raw DIR] [--start 2026-09-01 --end 2026-10-31] [--fractions 0.01,0.05,0.1] [--no-gate]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.common.trace import DAY, Trace, read_trace_csv
from smartcache.tasks.evaluate.summary import summarize
from smartcache.tasks.simulate import window as W
from smartcache.tasks.simulate.core import SimResult, parse_policies
from smartcache.tasks.simulate.grid import is_heuristic, run_grid, totals
from smartcache.tasks.simulate.model import Scorer
from smartcache.tasks.simulate.report import plot_byte_hit_ratio

DEFAULT_POLICIES = "lru,lfu,gdsf,arc,s3fifo,belady"
DEFAULT_FRACTIONS = (0.01, 0.05, 0.1)
DEFAULT_HOLDOUT_DAYS = 28
SITE_LABEL = "site"


@dataclass(frozen=True)
class Evaluation:
    results: tuple[SimResult, ...]
    summary: dict
    files: dict[str, Path]


def evaluate(trace: Trace, out: str | Path, *, policies: Sequence[str] | str = DEFAULT_POLICIES,
             site_sizes: Mapping[str, int] | None = None, fractions: Sequence[float] = DEFAULT_FRACTIONS,
             scorers: Mapping[str, Scorer] | None = None, eval_from: float | None = None,
             sites: Sequence[str] | None = None, threshold: float | None = None,
             progress: bool | None = None, trace_path: str | Path | None = None,
             window_end: date | None = None) -> Evaluation:
    """Simulate, write metrics (Parquet + JSON) and the plot into ``out``; pure of the catalog.

    The whole ``trace`` is replayed; requests from ``eval_from`` (epoch s) on are counted. ``trace_path``
    (the CSV it came from) and ``window_end`` only go into the summary's ``window``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    site_sizes = dict(site_sizes or {})
    policies = parse_policies(policies)
    policies += [p for p in (scorers or {}) if p not in policies]
    labels: dict[tuple[str, int], str] = {}

    def sizes_for(site: str, sub: Trace) -> list[int]:
        counted = sub if eval_from is None else sub.take(sub.ts >= eval_from)
        ws = counted.working_set()
        chosen: list[tuple[int, str]] = []
        if site in site_sizes:
            chosen.append((int(site_sizes[site]), SITE_LABEL))
        chosen += [(max(1, int(ws * f)), _fraction_label(f)) for f in fractions]
        for size, label in chosen:
            labels.setdefault((site, size), label)
        if not chosen:
            raise SmartcacheError(f"no cache size for site {site}: add it to the catalog or give fractions")
        return sorted({s for s, _ in chosen})

    results = run_grid(trace, policies, sizes_for, sites=sites, scorers=scorers, threshold=threshold,
                       count_from=eval_from, progress=progress)
    results = [_label(r, labels[(r.site, r.cache_size)]) for r in results]
    results += _totals_by_label(results)
    replayed = trace if not sites else trace.take(np.isin(trace.site, [trace.sites.index(s) for s in sites]))
    window = {**W.describe(replayed, eval_from), "to": None if window_end is None else window_end.isoformat(),
              "trace": None if trace_path is None else str(trace_path)}
    summary = summarize(results, policies, window)
    files = {"metrics": _write_parquet(results, out / "metrics.parquet"),
             "json": out / "metrics.json",
             "plot": plot_byte_hit_ratio(_plotted(results, site_sizes), out / "byte_hit_ratio.png",
                                         title="held-out byte hit ratio")}
    files["json"].write_text(json.dumps({"summary": summary, "results": [r.to_dict() for r in results]},
                                        indent=2, sort_keys=True))
    return Evaluation(tuple(results), summary, files)


def _plotted(results: Sequence[SimResult], site_sizes: Mapping[str, int]) -> list[SimResult]:
    """All sites at the working-set fractions (summing the sites' own sizes there would mix
    different sites into one point), and one panel per catalog site with its own size too."""
    return [r for r in results if (r.site == "*" and r.extra.get("size_label") != SITE_LABEL)
            or r.site in site_sizes]


def _fraction_label(f: float) -> str:
    pct = f * 100
    return f"{round(pct)}%" if abs(pct - round(pct)) < 1e-9 else f"{pct:g}%"


def _label(r: SimResult, label: str) -> SimResult:
    return SimResult(r.site, r.policy, r.cache_size, r.overall, r.per_day, r.seconds, {**r.extra, "size_label": label})


def _totals_by_label(results: Sequence[SimResult]) -> list[SimResult]:
    """All-site rows per (policy, size label): labels, not ranks, line the sites up."""
    by_label: dict[str, list[SimResult]] = {}
    for r in results:
        by_label.setdefault(r.extra["size_label"], []).append(r)
    out = []
    for label, rows in by_label.items():
        for t in totals(rows):
            out.append(_label(t, label))
    return out


def verdict_rows(results: Sequence[SimResult]) -> tuple[list[SimResult], str]:
    """The rows a verdict compares -- per site at its own cache size when the catalog gave sizes, else every
    simulated size -- and where that is, in words."""
    rows = [r for r in results if r.site != "*" and r.extra.get("size_label") == SITE_LABEL]
    if rows:
        return rows, "the sites' cache sizes"
    return [r for r in results if r.site != "*"], "the simulated cache sizes (no site sizes in the catalog)"


def byte_hit_ratio(rows: Sequence[SimResult], policy: str) -> float | None:
    """``policy``'s byte hit ratio over ``rows``, byte-weighted over sites and sizes (None: no rows)."""
    mine = [r for r in rows if r.policy == policy]
    req = sum(r.overall.bytes_requested for r in mine)
    return sum(r.overall.bytes_hit for r in mine) / req if req else None


def promotion_verdict(results: Sequence[SimResult], model_policy: str, baseline: str = "lru") -> tuple[bool, str]:
    """Does ``model_policy`` beat ``baseline`` and every other heuristic evaluated (ARC, S3-FIFO, GDSF, ...)
    in byte hit ratio at the sites' own cache sizes (byte-weighted over the sites)?

    The reason names the strongest heuristic and the margin either way."""
    rows, where = verdict_rows(results)

    def ratio(policy: str) -> float | None:
        return byte_hit_ratio(rows, policy)

    m, b = ratio(model_policy), ratio(baseline)
    if m is None or b is None:
        return False, f"no {model_policy} or {baseline} results to compare"
    others = {p: v for p in dict.fromkeys(r.policy for r in rows)
              if p != baseline and is_heuristic(p) and (v := ratio(p)) is not None}
    best = max(others.items(), key=lambda pv: pv[1]) if others else None
    if m <= b:
        rival, value = baseline, b
    elif best is not None and m <= best[1]:
        rival, value = best
    else:
        rival, value = None, None
    if rival is not None:
        beaten = f"; it does beat {baseline.upper()}'s {b:.4f}" if rival != baseline else ""
        return False, (f"byte hit ratio {m:.4f} does not beat {rival.upper()}'s {value:.4f} (short by "
                       f"{value - m:.4f}{beaten}) at {where} on held-out days")
    also = f" and the best other heuristic, {best[0].upper()}'s {best[1]:.4f} (by {m - best[1]:+.4f})" if best else ""
    return True, (f"byte hit ratio {m:.4f} beats {baseline.upper()}'s {b:.4f} (by {m - b:+.4f}){also} at {where} "
                  "on held-out days")


def _write_parquet(results: Sequence[SimResult], path: Path) -> Path:
    rows = []
    for r in results:
        base = {"site": r.site, "policy": r.policy, "cache_size": r.cache_size,
                "size_label": r.extra.get("size_label", "")}
        rows.append({**base, "scope": "overall", "day": None, **r.overall.to_dict()})
        rows += [{**base, "scope": "day", "day": d, **m.to_dict()} for d, m in r.per_day]
    schema = pa.schema([("site", pa.string()), ("policy", pa.string()), ("cache_size", pa.int64()),
                        ("size_label", pa.string()), ("scope", pa.string()), ("day", pa.date32()),
                        ("requests", pa.int64()), ("hits", pa.int64()), ("hit_ratio", pa.float64()),
                        ("bytes_requested", pa.int64()), ("bytes_hit", pa.int64()),
                        ("byte_hit_ratio", pa.float64()), ("bytes_written", pa.int64()),
                        ("bytes_remote", pa.int64())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


# -- the DAG node -------------------------------------------------------------------------------
def held_out_window(raw: str | Path | None, start: str | None, end: str | None, model=None,
                    holdout_days: int = DEFAULT_HOLDOUT_DAYS) -> tuple[date | None, date | None]:
    """The counted days: ``start``/``end`` if given; else from the model's validation days (``val_days``
    in its metrics) to the newest raw partition; else the last ``holdout_days`` raw days."""
    from smartcache.tasks.reduce.trace import raw_partitions, window

    first, last = window(None, start, end)
    if first is not None and last is not None:
        return first, last
    newest = None
    if raw is not None and (first is None or last is None):
        parts = raw_partitions(raw)
        newest = parts[-1][0] if parts else None
    last = last or newest
    if first is None and model is not None:
        val = (model.metrics or {}).get("val_days") or []
        if val:
            first = date.fromisoformat(str(val[0]))
    if first is None and last is not None:
        first = date.fromordinal(last.toordinal() - holdout_days + 1)
    return first, last


def load_held_out(out: Path, trace_csv: Path | None, raw: str | Path | None, first: date | None,
                  last: date | None, warmup_days: int) -> tuple[Trace, float | None]:
    """The trace to replay and the epoch second the counted window starts (the CSV: ``trace_csv``, else
    ``out/trace.csv``).

    Everything in the trace before the window is replayed (warm caches, as ``simulate --from``): from raw
    partitions that is the ``warmup_days`` exported before ``first``; a given ``--trace`` is replayed from
    its start. Requests after ``last`` are left out (they cannot change what comes before them)."""
    from smartcache.tasks.reduce.trace import export_trace

    lo = None if first is None else date.fromordinal(first.toordinal() - warmup_days)
    if trace_csv is None:
        if raw is None:
            raise SmartcacheError("give --trace FILE.csv or --raw DIR")
        trace_csv = export_trace(out / "trace.csv", raw=raw, start=lo.isoformat() if lo else None,
                                 end=last.isoformat() if last else None).out
    trace = read_trace_csv(trace_csv)
    if last is not None:
        trace = trace.take(trace.ts < W.day_start(last) + DAY)
    if len(trace) == 0 or (first is not None and trace.ts[-1] < W.day_start(first)):
        raise SmartcacheError(f"no requests between {first or lo} and {last} in {trace_csv}")
    if first is not None:
        return trace, W.day_start(first)
    if warmup_days:
        return trace, float((int(trace.ts[0] // DAY) + warmup_days) * DAY)
    return trace, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.evaluate", description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--trace", type=Path, help="trace CSV (timestamp,site,lfn,size)")
    src.add_argument("--raw", help="raw log partitions (default: <data root>/raw of the configuration)")
    ap.add_argument("--start", help="first held-out day (YYYY-MM-DD or YYYY-MM); default: the model's "
                                    "first validation day, else --holdout-days before the newest partition")
    ap.add_argument("--end", help="last held-out day (default: the newest partition)")
    ap.add_argument("--holdout-days", type=int, default=DEFAULT_HOLDOUT_DAYS)
    ap.add_argument("--warmup-days", type=int, default=7,
                    help="days before --start exported from --raw and replayed, not counted (a --trace is "
                         "replayed from its start); without a window start: the trace's first N days")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--policies", default=DEFAULT_POLICIES)
    ap.add_argument("--model", help="catalog model NAME (its newest version) or NAME:VERSION, as model:NAME")
    ap.add_argument("--baseline-model", metavar="NAME:VERSION",
                    help="the production version, replayed as a second model policy: the model is promoted only "
                         "if it also beats this one (the retrain workflow)")
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--sites", help="comma-separated sites (default: all in the trace)")
    ap.add_argument("--fractions", default=",".join(str(f) for f in DEFAULT_FRACTIONS),
                    help="cache sizes as fractions of each site's held-out working set ('' for none)")
    ap.add_argument("--catalog-url", "--catalog", dest="catalog", help="catalog URL (default: the configuration's)")
    ap.add_argument("--name", help="dataset name to register (default: evaluation-<model|baseline>-<out dir>)")
    ap.add_argument("--parent", action="append", default=[], help="parent dataset name (repeatable)")
    ap.add_argument("--run-id", type=int)
    ap.add_argument("--no-gate", dest="gate", action="store_false",
                    help="do not set the model's stage (default: production if it beats LRU and the best "
                         "other heuristic evaluated, else staging)")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _newest(store, ref: str, run_id: int | None = None):
    """NAME:VERSION as given; a bare NAME means its newest version (the one just trained), not production --
    the newest one this run registered, when it registered one (another run may have trained meanwhile)."""
    name, _, version = ref.partition(":")
    if version:
        try:
            return store.get_model(name, int(version))
        except ValueError as e:
            raise SmartcacheError(f"invalid model reference {ref!r}: use NAME or NAME:VERSION") from e
    versions = store.list_models(name)
    if not versions:
        return store.get_model(name)   # raises NotFound with the catalog's message
    mine = [m for m in versions if run_id is not None and m.run_id == run_id]
    return max(mine or versions, key=lambda m: m.version)


def _run(args: argparse.Namespace) -> int:
    from smartcache.catalog import load_config, open_store
    from smartcache.tasks.simulate.model import load_scorer

    fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    cfg = load_config() if args.catalog is None or (args.trace is None and args.raw is None) else None
    store = open_store(args.catalog or cfg.catalog_url, migrate=True)
    try:
        model = _newest(store, args.model, args.run_id) if args.model else None
        baseline = _newest(store, args.baseline_model) if args.baseline_model else None
        raw = None if args.trace else (args.raw or str(cfg.data_root / "raw"))
        first, last = held_out_window(raw, args.start, args.end, model, args.holdout_days)
        trace, eval_from = load_held_out(args.out, args.trace, raw, first, last, args.warmup_days)
        trace_csv = args.trace or args.out / "trace.csv"
        policy = f"model:{args.model}" if args.model else None
        scorers = {policy: load_scorer(store, model.ref)} if model else {}
        base_policy = None
        if baseline is not None and model is not None:
            if baseline.ref == model.ref:
                raise SmartcacheError(f"--model {args.model} is {model.ref}, the --baseline-model itself")
            base_policy = f"model:{baseline.ref}"
            scorers[base_policy] = load_scorer(store, baseline.ref)
        site_sizes = {s.name: s.cache_size for s in store.list_sites()}
        ev = evaluate(trace, args.out, policies=args.policies, site_sizes=site_sizes, fractions=fractions,
                      scorers=scorers, eval_from=eval_from,
                      sites=[s for s in args.sites.split(",") if s] if args.sites else None, threshold=args.threshold,
                      trace_path=trace_csv.resolve(), window_end=last)
        verdict = None
        if model is not None:
            if args.baseline_model:
                from smartcache.tasks.evaluate.versus import retrain_verdict
                ok, reason = retrain_verdict(ev.results, policy, base_policy, baseline.ref if base_policy else None)
            else:
                ok, reason = promotion_verdict(ev.results, policy)
            verdict = {"model": model.ref, "promote": ok, "reason": reason, "gate_applied": args.gate,
                       "baseline_model": baseline.ref if baseline is not None else None}
            if args.gate:
                store.set_model_stage(model.name, model.version, "production" if ok else "staging", reason)
        name = args.name or f"evaluation-{(model.ref if model else 'baseline').replace(':', '-v')}-{args.out.resolve().name}"
        store.register_dataset(name, "evaluation", str(ev.files["metrics"].resolve()), format="parquet",
                               n_rows=len(ev.results),
                               meta={**ev.summary, "verdict": verdict, "window": [str(first), str(last)],
                                     "warmup_days": args.warmup_days, "plot": str(ev.files["plot"].resolve()),
                                     "json": str(ev.files["json"].resolve())},
                               parents=args.parent, run_id=args.run_id)
    finally:
        store.close()
    print(json.dumps({"dataset": name, **ev.summary, "verdict": verdict}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
