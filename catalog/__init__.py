"""The smartcache catalog: datasets, models, runs, sites and placements in one SQL database.

Also home of what every other part stands on: the error hierarchy, typed configuration and
size units. The SQL parts (SQLAlchemy) load on first use, so that worker processes that only
need errors or units start quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from smartcache.catalog.config import Config, load_config
from smartcache.catalog.errors import (AlreadyExists, CatalogError, ConfigError, ErrorCode, Invalid, NotFound,
                                       SmartcacheError, Unavailable)
from smartcache.catalog.units import format_size, parse_size
from smartcache.catalog.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from smartcache.catalog.records import Dataset, Model, Placement, Quarantine, Run, RunNode, Site
    from smartcache.catalog.store import Store

_LAZY = {"Store": "smartcache.catalog.store",
         **{n: "smartcache.catalog.records"
            for n in ("Dataset", "Model", "Placement", "Quarantine", "Run", "RunNode", "Site")}}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def open_store(url: str, migrate: bool = False, on_create: Callable[[str], None] | None = None) -> "Store":
    """Open the catalog at ``url``; with ``migrate`` bring its schema to the newest revision first.

    ``on_create(where)`` is called when that migration created the catalog in an empty database
    (``where``: the SQLite file, else the URL without its password), so a command can say so.
    """
    from smartcache.catalog.store import Store
    store = Store.open(url)
    if migrate:
        from smartcache.catalog.migrate import current_revision, head_revision, upgrade
        current = current_revision(store.engine)
        if current != head_revision():
            upgrade(store.engine)
            if current is None and on_create is not None:
                on_create(_where(store))
    return store


def _where(store: "Store") -> str:
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return url.database
    return url.render_as_string(hide_password=True)


__all__ = ["AlreadyExists", "CatalogError", "Config", "ConfigError", "Dataset", "ErrorCode", "Invalid", "Model",
           "NotFound", "Placement", "Quarantine", "Run", "RunNode", "Site", "SmartcacheError", "Store",
           "Unavailable", "__version__", "format_size", "load_config", "open_store", "parse_size"]
