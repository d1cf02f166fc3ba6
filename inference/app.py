"""The Flask application factory of the inference service."""

from __future__ import annotations

from flask import Flask

from smartcache.catalog import Config, Store, open_store
from smartcache.inference import bodylimit, errors
from smartcache.inference.models import Loader
from smartcache.inference.service import Service


def create_app(config: Config, store: Store | None = None, *, refresh_seconds: float = 5.0,
               convert_timeout: float = 300.0, loader: Loader | None = None,
               fast_path: bool = True) -> Flask:
    """Build the app over the catalog ``store`` (opened from ``config.catalog_url`` if None).

    ``refresh_seconds``: how often each worker re-reads the catalog for newer model versions
    and placement lists (0 = never; tests call ``service.refresh_now()``).
    ``fast_path``: serve ``POST /json`` and ``GET /decide`` successes without Flask's
    per-request machinery (see :mod:`smartcache.inference.fastpath`).
    """
    from smartcache.inference import cache, ops, tfaas
    # smartcache is a namespace package: Flask cannot guess an instance folder, so give one.
    app = Flask(__name__, instance_path=str(config.home / "instance"))
    store = store if store is not None else open_store(config.catalog_url)
    service = Service(config, store, refresh_seconds=refresh_seconds, convert_timeout=convert_timeout,
                      loader=loader)
    app.extensions["smartcache"] = service
    errors.install(app)
    # 413 past a route's body limit, chunked bodies too; /upload has its own (max_upload_bytes)
    bodylimit.install(app, tfaas.JSON_MAX_BYTES)
    service.metrics.install(app)
    app.before_request(service.before_request)
    for bp in (tfaas.bp, cache.bp, ops.bp):
        app.register_blueprint(bp)
    if fast_path:
        from smartcache.inference.fastpath import FastPath
        app.wsgi_app = FastPath(app.wsgi_app, service)
    return app
