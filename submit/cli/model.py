"""``smartcache score`` (bulk scoring into placement lists) and ``smartcache push`` (lists to sites)."""

from __future__ import annotations

from pathlib import Path

import click

from smartcache.catalog import SmartcacheError, format_size
from smartcache.submit.context import echo_json, echo_table, get_config, get_store, json_option, user_errors
from smartcache.submit.fileerrors import check_writable, writing


@click.command()
@click.argument("sites", nargs=-1)
@click.option("--dest", help="Push to this URI instead of the site's destination (one site only).")
@click.option("--attempts", type=click.IntRange(min=1), default=4, show_default=True,
              help="Tries per list (exponential backoff between them).")
@json_option
@click.pass_context
@user_errors
def push(ctx: click.Context, sites: tuple[str, ...], dest: str | None, attempts: int, as_json: bool) -> None:
    """Push the latest placement list of SITES (default: every site that has one) to the sites.

    Atomic (upload aside, verify sha256, rename), idempotent (an identical list is not sent again),
    and recorded on the placement; run it again to retry a failed push.
    """
    from smartcache.tasks.push.task import push_sites
    if dest and len(sites) != 1:
        raise SmartcacheError("--dest needs exactly one SITE")
    results = push_sites(get_store(ctx), list(sites), dest_uri=dest, attempts=attempts)
    if as_json:
        echo_json([r.to_dict() for r in results])
    else:
        echo_table(["site", "placement", "status", "destination", "attempts", "error"],
                   [(r.site, r.placement_id, ("unchanged" if not r.changed else "pushed") if r.ok else "FAILED",
                     r.destination, r.attempts, r.error) for r in results])
    if any(not r.ok for r in results):
        raise click.ClickException(f"{sum(not r.ok for r in results)} push(es) failed; "
                                   "the previous lists are intact at those sites")


@click.command()
@click.option("--features", required=True, help="Catalog name of the feature table dataset.")
@click.option("--model", "model", required=True, help="NAME (production, else newest) or NAME:VERSION.")
@click.option("--site", "sites", multiple=True, help="Site (repeatable; default: every catalog site).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for <site>.txt/.parquet [default: <data root>/placements].")
@click.option("--push/--no-push", "do_push", default=False, help="Push each list to its site afterwards.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@json_option
@click.pass_context
@user_errors
def score(ctx: click.Context, features: str, model: str, sites: tuple[str, ...], out: Path | None, do_push: bool,
          progress: bool | None, as_json: bool) -> None:
    """Score every candidate file of the latest day and write per-site placement lists."""
    from smartcache.tasks.push.task import push_placement
    from smartcache.tasks.score.task import score_sites
    store = get_store(ctx)
    out = out or get_config(ctx).data_root / "placements"
    check_writable("placement lists to", out, folder=True)
    with writing("placement lists to", out):
        lists, stats = score_sites(store, features, model, out, sites=sites, progress=progress)
    pushed = {}
    if do_push:
        for sl in lists:
            current = next(p for p in store.list_placements(sl.site) if p.id == sl.placement.id)
            pushed[sl.site] = push_placement(store, current)
    if as_json:
        return echo_json({**stats, "sites": [{"site": sl.site, "placement": sl.placement.id, "list": str(sl.path),
                                               "files": sl.n_files, "bytes": sl.n_bytes, "candidates": sl.candidates,
                                               "changed": sl.changed,
                                               **({"push": pushed[sl.site].to_dict()} if sl.site in pushed else {})}
                                              for sl in lists]})
    echo_table(["site", "files", "size", "candidates", "list", "push"],
               [(sl.site, sl.n_files, format_size(sl.n_bytes), sl.candidates, sl.path,
                 (pushed[sl.site].destination if pushed[sl.site].ok else f"FAILED: {pushed[sl.site].error}")
                 if sl.site in pushed else "") for sl in lists])
    click.echo(f"scored {stats['rows']} candidates of {stats['day']} with {stats['model']}")


commands = [push, score]
