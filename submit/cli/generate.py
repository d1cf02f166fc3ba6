"""``smartcache generate logs``: synthetic CMS raw access logs for demos, tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import click

from smartcache.catalog.config import load_config
from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.generate.task import FORMATS, generate_logs, summary


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
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal.")
@click.pass_context
def logs(ctx: click.Context, months: int, end: str | None, out: Path | None, fmt: str, scale: float, seed: int,
         corrupt: int, workers: int | None, progress: bool) -> None:
    """Write daily partitions year=YYYY/month=M/day=D/part-00000.{avro,json.gz} of JobMonitoring records."""
    if out is None:
        config = ctx.obj if ctx.obj is not None else load_config()     # the main group passes its Config
        out = Path(config.data_root) / "raw"
    try:
        result = generate_logs(out, months, end, fmt, scale, seed, corrupt, progress, workers=workers)
    except SmartcacheError as e:
        raise click.ClickException(str(e)) from e
    click.echo(summary(result))


commands = [generate]
