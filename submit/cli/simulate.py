"""``smartcache simulate`` (cache policies on a trace) and ``smartcache export trace`` (raw logs -> trace CSV)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from smartcache.catalog import SmartcacheError, parse_size
from smartcache.catalog.config import Config
from smartcache.submit.context import echo_json, get_store, json_option, user_errors
from smartcache.submit.fileerrors import check_writable, writing

DEFAULT_POLICIES = "lru,lfu,gdsf,arc,s3fifo,belady"  # the same default as smartcache.tasks.simulate.core


GAP_NOTE = ("gap_closed = (policy - LRU) / (Belady - LRU) in byte hit ratio at the row's site and cache size; "
            "vs_best_heuristic = the model's byte hit ratio minus the best heuristic's there; nothing averaged")


def _sizes(text: str) -> list[int]:
    sizes = [parse_size(t) for t in text.split(",") if t.strip()]
    if not sizes:
        raise SmartcacheError("give at least one cache size, e.g. --cache-size 10TB or 1TB,5TB,10TB")
    if min(sizes) <= 0:
        raise SmartcacheError("cache sizes must be positive")
    return sorted(set(sizes))


@click.command()
@click.option("--trace", "trace_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="CSV with header timestamp,site,lfn,size (epoch seconds, bytes); optional score column.")
@click.option("--cache-size", "cache_sizes", required=True, metavar="SIZE[,SIZE...]",
              help="Cache size per site, e.g. 10TB or 1TB,5TB,10TB.")
@click.option("--policy", "policies", default=DEFAULT_POLICIES, show_default=True,
              help="Comma-separated: lru, lfu, gdsf, arc, s3fifo, sieve, belady, belady-bypass, model (score column), "
                   "model:NAME.")
@click.option("--site", help="Only this site (default: every site in the trace, each with its own cache).")
@click.option("--threshold", type=float, help="Admission threshold of model policies (default: the model's, or 0.5).")
@click.option("--from", "from_day", metavar="YYYY-MM-DD",
              help="Replay the whole trace (warm caches) and count only requests from this day (00:00 UTC) on; "
                   "the same window as evaluate's.")
@click.option("--warmup-days", type=click.IntRange(min=0), default=0, show_default=True,
              help="Replay the first N days to fill the caches, count from the day after.")
@click.option("--retrain-every", metavar="DURATION",
              help="Also replay each model:NAME retrained on the past only every DURATION (7d, 12h) from the first "
                   "counted day (or the model's --until); reported as model:NAME+retrainDURATION beside the frozen one.")
@click.option("--retrain-window", metavar="DURATION", default="28d", show_default=True,
              help="With --retrain-every: train each time on the requests of this last DURATION ('all' for the whole past).")
@click.option("--retrain-gate", type=click.Choice(["bhr", "nll", "none"]), default="bhr", show_default=True,
              help="With --retrain-every: a refit replaces the model only if it beats it on the window's held-out days "
                   "(bhr: byte hit ratio at the cache sizes; nll: censored log-likelihood); none: always, no hold-out.")
@click.option("--retrain-start", type=click.Choice(["best", "warm", "fresh"]), default="best", show_default=True,
              help="With --retrain-every: fit from scratch, warm-started from the current model, or both and keep the "
                   "lower validation loss (best, as the retrain workflow does).")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False), help="Write a PNG: byte hit ratio vs cache size.")
@click.option("--per-day", is_flag=True, help="With --json: add per-day metrics.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@json_option
@click.pass_context
@user_errors
def simulate(ctx: click.Context, trace_path: Path, cache_sizes: str, policies: str, site: str | None,
             threshold: float | None, from_day: str | None, warmup_days: int, retrain_every: str | None,
             retrain_window: str, retrain_gate: str, retrain_start: str, plot: Path | None, per_day: bool,
             progress: bool | None, as_json: bool) -> None:
    """Replay an access trace through cache policies; report hit ratios and WAN traffic."""
    from smartcache.tasks.simulate import window as W
    from smartcache.tasks.simulate.grid import run_grid, totals
    from smartcache.tasks.simulate.model import load_scorer, model_name
    from smartcache.tasks.simulate.report import format_table, gap_fields, plot_byte_hit_ratio

    sizes = _sizes(cache_sizes)
    if from_day is not None and warmup_days:
        raise SmartcacheError("give --from or --warmup-days, not both")
    first = W.parse_day(from_day) if from_day is not None else None
    # the simulator compiles numba kernels: import it only when a simulation runs
    from smartcache.tasks.common.trace import DAY, read_trace_csv
    from smartcache.tasks.simulate.core import parse_policies
    wanted = parse_policies(policies)
    if threshold is not None and not math.isfinite(threshold):
        raise SmartcacheError("--threshold must be a number")
    if not trace_path.is_file():
        raise SmartcacheError(f"trace file not found: {trace_path}")
    if plot:
        check_writable("the plot", plot)          # before the simulation, not after it
    scorers = {p: load_scorer(get_store(ctx), model_name(p)) for p in wanted if model_name(p)}  # before the long read
    trace = read_trace_csv(trace_path)
    sites = [site] if site else None
    replayed = trace.for_site(site) if site else trace  # fails early with the sites the trace has
    count_from = None
    if first is not None:
        count_from = W.day_start(first)
    elif warmup_days:
        count_from = float((int(trace.ts[0] // DAY) + warmup_days) * DAY)
    window = W.describe(replayed, count_from)
    W.check(window, "--from" if first is not None else "--warmup-days")
    if retrain_every:
        wanted, scorers = _with_retraining(get_store(ctx), wanted, scorers, retrain_every, count_from, retrain_window,
                                           retrain_gate, retrain_start, sizes)
    results = run_grid(trace, wanted, sizes, sites=sites, scorers=scorers, threshold=threshold,
                       count_from=count_from, progress=progress)
    results = results + totals(results)
    if plot:
        with writing("the plot", plot):
            plot_byte_hit_ratio(results, plot, title=trace_path.name)
    if as_json:
        gaps = gap_fields(results)
        return echo_json({"trace": str(trace_path), "requests": len(trace), "objects": trace.n_obj,
                          "sites": sorted({r.site for r in results} - {"*"}), "plot": str(plot) if plot else None,
                          "window": window, "gap_closed_definition": GAP_NOTE,
                          **({"retraining": {p: s.steps for p, s in scorers.items() if hasattr(s, "steps")}}
                             if retrain_every else {}),
                          "results": [{**r.to_dict(per_day=per_day), **gaps.get((r.site, r.policy, r.cache_size), {})}
                                      for r in results]})
    click.echo(format_table(results))
    click.echo(W.sentence(window))
    _echo_steps(scorers)
    if plot:
        click.echo(f"plot written to {plot}")


def _with_retraining(store, wanted: list[str], scorers: dict, every_text: str, count_from: float | None,
                     window_text: str, gate: str, start: str, sizes: list[int]) -> tuple[list[str], dict]:
    """Add a retrained twin of every model policy (see tasks/train/retrain.py)."""
    from smartcache.tasks.features.online import ONLINE_FEATURES
    from smartcache.tasks.train.continued import warm_source
    from smartcache.tasks.train.retrain import RetrainingScorer, RetrainPlan, parse_every
    from smartcache.tasks.train.trace import FEATURE_SET
    every = parse_every(every_text)
    window = None if window_text.strip().lower() == "all" else parse_every(window_text)
    models = [p for p in wanted if p in scorers]
    if not models:
        raise SmartcacheError("--retrain-every needs a model:NAME policy")
    out, extra = list(wanted), {}
    for p in models:
        base = scorers[p]
        begin = count_from if count_from is not None else base.params.get("until")
        if begin is None:
            raise SmartcacheError(f"--retrain-every: give --from DAY (the model {base.ref} records no --until)")
        label = f"{p}+retrain{every_text.strip()}"
        plan = RetrainPlan(every, float(begin), window=window, init=start, gate=gate, sizes=tuple(sizes))
        warm = warm_source(store, base.ref, ONLINE_FEATURES, FEATURE_SET) if start != "fresh" else None
        extra[label] = RetrainingScorer(base, plan, warm=warm)
        out.append(label)
    return out, {**scorers, **extra}


def _echo_steps(scorers: dict) -> None:
    from smartcache.tasks.train.retrain import describe_steps
    for label, s in scorers.items():
        if hasattr(s, "steps"):
            click.echo("\n".join(describe_steps(label, s.steps)))


@click.group()
def export() -> None:
    """Export data in plain formats for other tools."""


@export.command("trace")
@click.option("--raw", type=click.Path(path_type=Path, file_okay=False), help="Raw log partitions (exact trace).")
@click.option("--reduced", type=click.Path(path_type=Path, file_okay=False),
              help="Reduced Parquet partitions (approximate: per-day aggregates spread over the day).")
@click.option("--feedback", is_flag=True,
              help="The accesses the inference service saw (<data root>/feedback, or --feedback-dir).")
@click.option("--feedback-dir", type=click.Path(path_type=Path, file_okay=False), help="Feedback partitions folder.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Trace CSV to write.")
@click.option("--site", help="Only this site.")
@click.option("--months", type=int, help="The last N months (ending at --end, or at the newest partition).")
@click.option("--start", help="First day, YYYY-MM-DD or YYYY-MM.")
@click.option("--end", help="Last day, YYYY-MM-DD or YYYY-MM.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@json_option
@click.pass_context
@user_errors
def export_trace_cmd(ctx: click.Context, raw: Path | None, reduced: Path | None, feedback: bool,
                     feedback_dir: Path | None, out: Path, site: str | None, months: int | None,
                     start: str | None, end: str | None, progress: bool | None, as_json: bool) -> None:
    """Write the trace CSV (timestamp,site,lfn,size) that 'smartcache simulate' and 'train' read."""
    from smartcache.tasks.reduce.trace import export_trace

    if feedback or feedback_dir:
        return _export_feedback(ctx, feedback_dir, out, site, start, end, as_json, bool(raw or reduced))
    check_writable("the trace", out)
    with writing("the trace", out):
        stats = export_trace(out, raw=raw, reduced=reduced, site=site, months=months, start=start, end=end,
                             progress=progress)
    for line in stats.damaged:
        click.echo(f"warning: partition read in part: {line}", err=True)
    if as_json:
        return echo_json(stats.to_dict())
    click.echo(f"wrote {stats.rows} requests from {stats.partitions} partitions "
               f"({stats.records} records read) to {stats.out}")


def _export_feedback(ctx: click.Context, folder: Path | None, out: Path, site: str | None, start: str | None,
                     end: str | None, as_json: bool, other_source: bool) -> None:
    from smartcache.catalog.config import load_config
    from smartcache.tasks.feedback import export_feedback
    if other_source:
        raise SmartcacheError("give one source: --raw, --reduced or --feedback")
    cfg = ctx.find_object(Config) or load_config()
    folder = folder or Path(cfg.data_root) / "feedback"
    check_writable("the trace", out)
    with writing("the trace", out):
        path, rows, _ = export_feedback(out, folder, site=site, first=start, last=end)
    if as_json:
        return echo_json({"out": str(path), "rows": rows, "source": str(folder), "site": site})
    click.echo(f"wrote {rows} accesses{f' of {site}' if site else ''} from the feedback in {folder} to {path}")


commands = [simulate, export]
