"""``smartcache site``: what runs at a site — the agent that pre-places placement lists into XCache,
a local demo site (XRootD origin + XCache on 127.0.0.1), and the XCache decision plugin's build."""

from __future__ import annotations

from pathlib import Path

import click

from smartcache.catalog import SmartcacheError, format_size, parse_size
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.submit.context import SmartcacheGroup, echo_json, get_config, get_store, json_option
from smartcache.submit.fileerrors import check_writable


def _size(_ctx, _param, value):
    if value is None:
        return None
    try:
        return parse_size(value)
    except SmartcacheError as e:
        raise click.BadParameter(str(e)) from e


def _site_dir(ctx: click.Context, site: str, given: Path | None) -> Path:
    return (given or get_config(ctx).data_root / "sites" / site).resolve()


def _local_state(ctx: click.Context, site: str, given: Path | None) -> dict:
    from smartcache.tasks.site.demo import SITE_FILE, load_site
    root = _site_dir(ctx, site, given)
    return load_site(root) if (root / SITE_FILE).exists() else {}


@click.group("site", cls=SmartcacheGroup)
def site() -> None:
    """At a site: pre-place placement lists into XCache, run a demo site, build the decision plugin."""


@site.command("agent")
@click.option("--site", "name", required=True, help="The site (as in 'smartcache sites list').")
@click.option("--list", "list_uri", help="Where the site's list is pushed: the list or its folder (path, file://, "
              "root://, https://) [default: the site's push destination in the catalog].")
@click.option("--cache", "cache_url", help="The XCache, root://127.0.0.1:PORT [default: the demo site's].")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="XCache's oss.localroot, to report what it "
              "holds [default: the demo site's].")
@click.option("--install", type=click.Path(path_type=Path), help="Copy the list here for the decision plugin "
              "[default: the demo site's list path].")
@click.option("--dir", "site_dir", type=click.Path(path_type=Path), help="The demo site's folder.")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Where resume state and the contents CSV go.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option("--plugin-reload", type=float, help="The plugin's reload= seconds: a younger list is given that "
              "long to be seen [default: the demo site's, else 5].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_option
@click.pass_context
def agent(ctx: click.Context, name: str, list_uri: str | None, cache_url: str | None, cache_dir: Path | None,
          install: Path | None, site_dir: Path | None, state_dir: Path | None, concurrency: int,
          plugin_reload: float | None, no_progress: bool, as_json: bool) -> None:
    """Pre-place the site's pushed placement list by reading it through XCache, then record the cache's
    contents in the catalog (dataset cache/SITE). Resumable: a rerun skips the files already placed."""
    from smartcache.tasks.site.agent import run_agent
    store = get_store(ctx)
    local = _local_state(ctx, name, site_dir)
    if list_uri is None:
        try:
            list_uri = store.get_site(name).push_uri
        except NotFound:
            list_uri = None
        list_uri = list_uri or local.get("push_uri")
        if not list_uri:
            raise Invalid(f"site {name} has no push destination: give --list")
    cache_url = cache_url or local.get("cache_url")
    if not cache_url:
        raise Invalid("give --cache root://HOST:PORT (the site's XCache)")
    state_dir = state_dir or Path(local.get("state_dir") or _site_dir(ctx, name, site_dir) / "agent")
    check_writable("the agent's state to", state_dir, folder=True)
    if install:
        check_writable("the list for the plugin to", install)
    result = run_agent(store, name, list_uri, cache_url, state_dir=state_dir,
                       install_to=install or (Path(local["list_path"]) if local.get("list_path") else None),
                       cache_dir=cache_dir or (Path(local["cache_dir"]) if local.get("cache_dir") else None),
                       concurrency=concurrency, progress=False if no_progress else None,
                       plugin_reload=plugin_reload if plugin_reload is not None else float(local.get("reload", 5.0)))
    if as_json:
        echo_json(result.to_dict())
    else:
        p = result.placement
        click.echo(f"list      {result.list_uri} ({p.listed} files, model {result.header.get('model', '?')})"
                   f"{', installed for the plugin' if result.installed else ''}")
        click.echo(f"placed    {p.placed} files, {format_size(p.bytes_read)} in {p.seconds:.1f} s; "
                   f"{p.skipped} already done; {len(p.failed)} failed")
        for lfn, why in list(p.failed.items())[:10]:
            click.echo(f"  failed  {lfn}: {why}")
        if result.contents:
            c = result.contents
            click.echo(f"cache     {c.n_files} files ({c.n_complete} complete), {format_size(c.n_bytes)} "
                       f"-> catalog dataset {result.dataset}")
        else:
            click.echo("cache     contents not reported (give --cache-dir)")
        if result.not_cached:
            click.echo(f"warning   {len(result.not_cached)} listed files were read but are not in the cache: "
                       "is the decision plugin reading this list (--install)?", err=True)
    if not result.ok:
        ctx.exit(2)


@site.command("up")
@click.option("--site", "name", required=True)
@click.option("--dir", "site_dir", type=click.Path(path_type=Path), help="Site folder [default: DATA/sites/SITE].")
@click.option("--files", type=click.IntRange(0), default=20, show_default=True, help="Demo files on the origin.")
@click.option("--file-size", default="4MB", show_default=True, callback=_size, help="Mean demo file size.")
@click.option("--cache-size", callback=_size, help="XCache's byte budget (purged to it); default: disk only.")
@click.option("--plugin/--no-plugin", default=True, show_default=True, help="Admit by the placement list.")
@click.option("--decide", "decide_url", help="Ask this inference service about unlisted files, e.g. "
              "http://127.0.0.1:8083.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The service's token: the plugin reports the opens it answers itself to /access.")
@click.option("--reload", type=float, default=5.0, show_default=True, help="Seconds between list checks.")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Add the site to the catalog (push destination = its list) if it is not there.")
@click.pass_context
def up(ctx: click.Context, name: str, site_dir: Path | None, files: int, file_size: int, cache_size: int | None,
       plugin: bool, decide_url: str | None, token_file: Path | None, reload: float, register: bool) -> None:
    """Start a demo site on 127.0.0.1: an XRootD origin with demo files and an XCache in front of it."""
    from smartcache.tasks.site.plugin import build_plugin
    from smartcache.tasks.site.demo import demo_files, start_site
    from smartcache.tasks.site.xcache import CacheSettings
    root = _site_dir(ctx, name, site_dir)
    check_writable("the demo site to", root, folder=True)
    lib = build_plugin(root / "plugin") if plugin else None
    sizes = demo_files(files, file_size) if files else None
    if token_file is not None and not (lib and decide_url):
        raise click.UsageError("--token-file needs the plugin and --decide (the service to report to)")
    state = start_site(root, name, files=sizes, plugin=lib, decide_url=decide_url, reload=reload,
                       settings=CacheSettings(cache_bytes=cache_size), token_file=token_file)
    click.echo(f"origin    {state['origin_url']}  ({files} demo files under /store/data)")
    click.echo(f"xcache    {state['cache_url']}  data {state['cache_dir']}")
    click.echo(f"list      {state['list_path']}  ({'admits by this list' if lib else 'no plugin: admits all'})")
    if register:
        store = get_store(ctx)
        try:
            store.get_site(name)
        except NotFound:
            store.add_site(name, cache_size or sum((sizes or {}).values()) or 10**9, push_uri=state["push_uri"])
            click.echo(f"catalog   added site {name} (push {state['push_uri']})")
    click.echo(f"stop with: smartcache site down --site {name}" + (f" --dir {root}" if site_dir else ""))


@site.command("down")
@click.option("--site", "name", required=True)
@click.option("--dir", "site_dir", type=click.Path(path_type=Path))
@click.pass_context
def down(ctx: click.Context, name: str, site_dir: Path | None) -> None:
    """Stop a demo site's XCache and origin."""
    from smartcache.tasks.site.demo import stop_site
    stopped = stop_site(_site_dir(ctx, name, site_dir))
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@site.command("status")
@click.option("--site", "name", required=True)
@click.option("--dir", "site_dir", type=click.Path(path_type=Path))
@click.pass_context
def status(ctx: click.Context, name: str, site_dir: Path | None) -> None:
    """Show a demo site's servers and whether they run."""
    from smartcache.tasks.site.demo import stop_site
    state = _local_state(ctx, name, site_dir)
    if not state:
        raise Invalid(f"no demo site {name} at {_site_dir(ctx, name, site_dir)}")
    running = set(stop_site(Path(state["root"]), dry_run=True))
    for key in ("origin", "cache"):
        s = state[key]
        click.echo(f"{key:7s} {s['name']:24s} root://127.0.0.1:{s['port']}  pid {s['pid']}  "
                   f"{'running' if s['name'] in running else 'stopped'}")


@site.command("build-plugin")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for the .so [default: HOME/plugins].")
@click.option("--force", is_flag=True, help="Rebuild even if this source was built there.")
@click.pass_context
def build_plugin_cmd(ctx: click.Context, out: Path | None, force: bool) -> None:
    """Compile the XCache decision plugin (needs g++, libxrootd-server-dev, libxrootd-dev)."""
    from smartcache.tasks.site.plugin import build_plugin
    out = out or get_config(ctx).home / "plugins"
    check_writable("the plugin to", out, folder=True)
    lib = build_plugin(out, force=force)
    click.echo(str(lib))
    click.echo(f"XCache config:  pfc.decisionlib {lib} list=/path/to/SITE.txt reload=5 default=0 "
               f"[decide=http://127.0.0.1:8083/decide site=SITE timeout_ms=250 ttl=300 retry=30 "
               f"origin=ORIGIN:1094 token_file=/path/to/token]", err=True)


commands = [site]
