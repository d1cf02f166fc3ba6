"""``smartcache generate logs``: synthetic CMS raw access logs for demos, tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import click

from smartcache.catalog.config import load_config
from smartcache.submit.context import user_errors
from smartcache.submit.fileerrors import check_writable, writing
from smartcache.tasks.generate.task import FORMATS, PART_RECORDS, generate_logs, summary


@click.group("generate")
def generate() -> None:
    """Generate synthetic data."""


@generate.command("logs")
@click.option("--months", type=click.IntRange(min=1), required=True, help="Calendar months to generate.")
@click.option("--end", metavar="YYYY-MM", default=None, help="Last month generated [default: the previous full month].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: <data_root>/raw].")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="avro", show_default=True)
@click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Volume multiplier (scale 1 is about 12k records a day).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--corrupt", type=click.IntRange(min=0), default=0, show_default=True,
              help="Damage this many partitions (listed in _corrupt.json).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes [default: up to 2].")
@click.option("--part-records", type=click.IntRange(min=1), default=PART_RECORDS, show_default=True,
              help="A day with more records is written as several part files (bounded memory).")
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal.")
@click.pass_context
@user_errors
def logs(ctx: click.Context, months: int, end: str | None, out: Path | None, fmt: str, scale: float, seed: int,
         corrupt: int, workers: int | None, part_records: int, progress: bool) -> None:
    """Write daily partitions year=YYYY/month=M/day=D/part-00000.{avro,json.gz} of JobMonitoring records."""
    if out is None:
        config = ctx.obj if ctx.obj is not None else load_config()     # the main group passes its Config
        out = Path(config.data_root) / "raw"
    check_writable("the raw logs to", out, folder=True)
    with writing("the raw logs to", out):
        result = generate_logs(out, months, end, fmt, scale, seed, corrupt, progress, workers=workers,
                               part_records=part_records)
    click.echo(summary(result))


@generate.command("trace")
@click.option("--family", type=click.Choice(["scan", "zipf", "mix", "drift"]), required=True,
              help="scan: one site, dataset scans, drifting popularity; zipf: IRM Zipf(0.9), heavy-tailed sizes, "
                   "popularity shifts; mix: three sites, reprocessing sweeps, a hot set, analysis bursts; drift: "
                   "scans whose re-run habits change halfway.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Trace CSV to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same trace.")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Length multiplier (days, and so requests).")
@user_errors
def trace(family: str, out: Path, seed: int, scale: float) -> None:
    """Write a synthetic request trace (timestamp,site,lfn,size) of one family, for simulate and train."""
    from smartcache.tasks.generate.traces import write_trace
    check_writable("the trace", out)
    with writing("the trace", out):
        tr = write_trace(family, out, seed, scale)
    days = (tr.ts[-1] - tr.ts[0]) / 86400 if len(tr) else 0
    click.echo(f"wrote {len(tr):,} requests of {tr.n_obj:,} files at {len(tr.site_names())} site(s) over "
               f"{days:.0f} days to {out}")


commands = [generate]
