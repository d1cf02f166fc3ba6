"""The ``smartcache`` click group and its own small commands (init, db, the catalog listings)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from smartcache.catalog import SmartcacheError, __version__, format_size, load_config, parse_size
from smartcache.catalog.config import precreate_catalog, write_default_config
from smartcache.catalog.migrate import current_revision, head_revision, upgrade
from smartcache.submit.context import SmartcacheGroup, echo_json, echo_table, get_config, get_store, json_option, when
from smartcache.submit.fileerrors import check_writable, writing


class SizeParam(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        try:
            return parse_size(value)
        except SmartcacheError as e:
            self.fail(str(e), param, ctx)


SIZE = SizeParam()


@click.group(cls=SmartcacheGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smartcache")
@click.option("--home", type=click.Path(path_type=Path), envvar="SMARTCACHE_HOME",
              help="Home folder for config and catalog [env SMARTCACHE_HOME; default ~/.smartcache].")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """smartcache: learn what a site's XCache should hold, and run it as HTCondor DAGs."""
    ctx.obj = load_config(home=home)


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the home folder, a config file with an API token, and the catalog schema."""
    cfg = get_config(ctx)
    check_writable("the smartcache home", cfg.home, folder=True)
    with writing("the smartcache home", cfg.home):
        path = write_default_config(cfg.home)     # home 0700, config.toml 0600 from creation
    for d in (cfg.data_root, cfg.runs_dir):
        check_writable("the data folder", d, folder=True)
        d.mkdir(parents=True, exist_ok=True)
    precreate_catalog(cfg.catalog_url)         # an SQLite catalog 0600 before SQLite creates it
    revision = upgrade(get_store(ctx, announce_new=False).engine)
    click.echo(f"home     {cfg.home}")
    click.echo(f"config   {path}")
    click.echo(f"catalog  {cfg.catalog_url} (schema {revision})")


@cli.group()
def db() -> None:
    """Catalog schema migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the catalog schema (idempotent)."""
    from smartcache.catalog import Store
    store = Store.open(get_config(ctx).catalog_url)
    try:
        click.echo(f"catalog at revision {upgrade(store.engine, revision)}")
    finally:
        store.close()


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the catalog's schema revision and the newest one this version knows."""
    from smartcache.catalog import Store
    store = Store.open(get_config(ctx).catalog_url)
    try:
        current, head = current_revision(store.engine), head_revision()
    finally:
        store.close()
    state = "up to date" if current == head else "needs 'smartcache db upgrade'"
    click.echo(f"current {current or '(empty)'}  head {head}  {state}")


# -- sites -----------------------------------------------------------------------------------
@cli.group()
def sites() -> None:
    """Sites: a name, a cache size and where placement lists are pushed."""


@sites.command("add")
@click.argument("name")
@click.option("--cache-size", type=SIZE, required=True, help="e.g. 500TB, 1.5PiB")
@click.option("--push", "push_uri", help="Push destination: file://, root:// or https:// URI.")
@click.option("--region", help="Region tag, e.g. IT or US (default: from the site name).")
@click.pass_context
def sites_add(ctx: click.Context, name: str, cache_size: int, push_uri: str | None, region: str | None) -> None:
    """Add a site."""
    region = region or _region_of(name)
    site = get_store(ctx).add_site(name, cache_size, push_uri=push_uri, region=region)
    click.echo(f"added site {site.name}: cache {format_size(site.cache_size)}, push {site.push_uri or '-'}")


@sites.command("set")
@click.argument("name")
@click.option("--cache-size", type=SIZE)
@click.option("--push", "push_uri")
@click.pass_context
def sites_set(ctx: click.Context, name: str, cache_size: int | None, push_uri: str | None) -> None:
    """Change a site's cache size or push destination."""
    site = get_store(ctx).update_site(name, cache_size=cache_size, push_uri=push_uri)
    click.echo(f"site {site.name}: cache {format_size(site.cache_size)}, push {site.push_uri or '-'}")


@sites.command("remove")
@click.argument("name")
@click.pass_context
def sites_remove(ctx: click.Context, name: str) -> None:
    """Remove a site (and its placement records)."""
    get_store(ctx).remove_site(name)
    click.echo(f"removed site {name}")


@sites.command("list")
@json_option
@click.pass_context
def sites_list(ctx: click.Context, as_json: bool) -> None:
    """List sites."""
    found = get_store(ctx).list_sites()
    if as_json:
        return echo_json([s.to_dict() for s in found])
    echo_table(["name", "region", "cache", "push"],
               [(s.name, s.region, format_size(s.cache_size), s.push_uri) for s in found])


def _region_of(site: str) -> str | None:
    parts = site.split("_")
    return parts[1] if len(parts) >= 3 and parts[0][:1] == "T" else None


# -- datasets, models, runs, placements -------------------------------------------------------
@cli.group()
def datasets() -> None:
    """Datasets the pipeline wrote (raw, reduced, features, ...) with lineage."""


@datasets.command("list")
@click.option("--kind", help="Only this kind (raw, reduced, features, ...).")
@json_option
@click.pass_context
def datasets_list(ctx: click.Context, kind: str | None, as_json: bool) -> None:
    """List datasets."""
    found = get_store(ctx).list_datasets(kind=kind)
    if as_json:
        return echo_json([d.to_dict() for d in found])
    echo_table(["name", "kind", "rows", "size", "parents", "uri"],
               [(d.name, d.kind, d.n_rows, format_size(d.n_bytes) if d.n_bytes is not None else "",
                 len(d.parents), d.uri) for d in found])


@datasets.command("quarantine")
@json_option
@click.pass_context
def datasets_quarantine(ctx: click.Context, as_json: bool) -> None:
    """List raw inputs that could not be read in full, with the reason."""
    found = get_store(ctx).list_quarantine()
    if as_json:
        return echo_json([q.to_dict() for q in found])
    echo_table(["source", "partial", "read", "lost", "reason"],
               [(q.source, "yes" if q.partial else "no", q.records_read,
                 q.records_lost if q.records_lost is not None else "?", q.reason) for q in found])


@cli.group()
def models() -> None:
    """Models in the catalog."""


@models.command("list")
@json_option
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """List model versions."""
    found = get_store(ctx).list_models()
    if as_json:
        return echo_json([m.to_dict() for m in found])
    echo_table(["model", "stage", "framework", "auc", "created", "artifacts"],
               [(m.ref, m.stage, m.framework, _fmt(m.metrics.get("auc")), when(m.created),
                 ",".join(a.kind for a in m.artifacts)) for m in found])


@models.command("stage")
@click.argument("name")
@click.argument("version", type=int)
@click.argument("stage", type=click.Choice(["staging", "production", "archived"]))
@click.option("--reason", help="Why (recorded in the catalog).")
@click.pass_context
def models_stage(ctx: click.Context, name: str, version: int, stage: str, reason: str | None) -> None:
    """Move a model version to another stage."""
    m = get_store(ctx).set_model_stage(name, version, stage, reason or "set by hand")
    click.echo(f"{m.ref} is now {m.stage}")


@cli.group()
def placements() -> None:
    """Placement lists made for sites."""


@placements.command("list")
@click.option("--site", help="Only this site.")
@json_option
@click.pass_context
def placements_list(ctx: click.Context, site: str | None, as_json: bool) -> None:
    """List placement lists, newest first."""
    found = get_store(ctx).list_placements(site)
    if as_json:
        return echo_json([p.to_dict() for p in found])
    echo_table(["id", "site", "model", "files", "size", "push", "created"],
               [(p.id, p.site, p.model, p.n_files, format_size(p.n_bytes), p.push_status, when(p.created))
                for p in found])


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else ""


def _register_parts() -> None:
    """Add the command groups that live beside their part (generate, submit, simulate, serve, pool)."""
    import importlib
    for module in ("generate", "reduce", "runs", "retrain", "model", "train", "serve", "simulate", "site", "pool"):
        for command in importlib.import_module(f"smartcache.submit.cli.{module}").commands:
            cli.add_command(command)


_register_parts()


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="smartcache", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
