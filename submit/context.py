"""What every CLI command shares: the loaded Config, the catalog store, output helpers."""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Iterable, Sequence

import click

from smartcache.catalog import Config, SmartcacheError, Store, open_store
from smartcache.submit.fileerrors import FileError, os_error_line


class SmartcacheGroup(click.Group):
    """Turns every SmartcacheError -- and every OSError a user can cause (a folder that is a file, no
    permission, a full disk) -- into one line on stderr and exit code 1, without a traceback."""

    def invoke(self, ctx: click.Context):
        return _one_line_errors(super().invoke, ctx)


def user_errors(fn: Callable) -> Callable:
    """The same for one command, so that it also behaves when used outside the main group."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return _one_line_errors(fn, *args, **kwargs)
    return wrapper


def _one_line_errors(fn: Callable, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except SmartcacheError as e:
        raise click.ClickException(str(e)) from e
    except BrokenPipeError:
        raise                   # output piped into `head`: click's own handling exits quietly
    except OSError as e:
        raise click.ClickException(os_error_line(e)) from e


def get_config(ctx: click.Context) -> Config:
    return ctx.find_object(Config)


def get_store(ctx: click.Context, *, announce_new: bool = True) -> Store:
    """One store per command invocation, migrated to the newest schema, closed on exit. A catalog
    this creates is announced on stderr (``init`` says it in its own words)."""
    root = ctx.find_root()
    store = root.meta.get("smartcache.store")
    if store is None:
        url = get_config(ctx).catalog_url
        try:
            store = open_store(url, migrate=True, on_create=announce_new_catalog if announce_new else None)
        except OSError as e:          # e.g. the SQLite file's folder cannot be made
            raise FileError(os_error_line(e, "cannot open the catalog", url)) from e
        root.meta["smartcache.store"] = store
        root.call_on_close(store.close)
    return store


def announce_new_catalog(where: str) -> None:
    click.echo(f"created a new catalog at {where}", err=True)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    rows = [["" if v is None else str(v) for v in row] for row in rows]
    if not rows:
        click.echo("(none)")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def when(ts) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if ts else ""


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
