"""``smartcache reduce`` and ``smartcache features``: the data-preparation tasks, run by hand.

Both pass their arguments to the task's own command line (``python -m smartcache.tasks.reduce``,
``... .features``), which is what the DAG nodes run, so the two never drift apart; ``--help`` shows
the task's options.
"""

from __future__ import annotations

from pathlib import Path

import click

from smartcache.submit.context import user_errors
from smartcache.submit.fileerrors import check_writable, writing

_PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _run(main, ctx: click.Context, args: tuple[str, ...]) -> None:
    argv = list(args)
    config = ctx.obj                      # the main group's Config: its catalog and data root are defaults
    if config is not None and "--catalog-url" not in argv and "--no-catalog" not in argv:
        argv += ["--catalog-url", config.catalog_url]
    if config is not None and "--out" not in argv and not any(a in ("-h", "--help") for a in argv):
        argv += ["--out", str(config.data_root)]
    out = _value_of(argv, "--out")
    if out is None:
        code = main(argv)
    else:
        check_writable(f"the {ctx.command.name} output to", out, folder=True)
        with writing(f"the {ctx.command.name} output to", out):
            code = main(argv)
    if code:
        ctx.exit(code)


def _value_of(argv: list[str], option: str) -> Path | None:
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith(option + "="):
            return Path(arg.split("=", 1)[1])
    return None


@click.command("reduce", context_settings=_PASS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
@user_errors
def reduce(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Reduce raw log partitions to per-day (site, file) Parquet (see --help)."""
    from smartcache.tasks.reduce.task import main
    _run(main, ctx, args)


@click.command("features", context_settings=_PASS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
@user_errors
def features(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Build the feature table from reduced partitions (see --help)."""
    from smartcache.tasks.features.task import main
    _run(main, ctx, args)


commands = [reduce, features]
