"""The per-process state behind the HTTP routes: models, placement lists, defaults, refresh.

One :class:`Service` per app. A daemon thread (started lazily in each worker process, so
that it survives gunicorn's fork) re-reads the catalog every ``refresh_seconds``: newer
model versions are swapped in and newer placement lists loaded without any request paying
for a catalog query.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import threading
import time
from functools import wraps
from typing import Callable

from flask import current_app, request

from smartcache.catalog import Config, Store
from smartcache.catalog.errors import CatalogError
from smartcache.catalog.config import InferenceConfig
from smartcache.inference.errors import APIError
from smartcache.inference.generation import Generation
from smartcache.inference.metrics import Metrics
from smartcache.inference.models import DefaultModel, Loader, ModelCache, ServingModel, load_serving_model
from smartcache.inference.placements import PlacementCache
from smartcache.inference.sandbox import Sandbox
from smartcache.inference.upload import Uploader

log = logging.getLogger("smartcache.inference")


class Service:
    def __init__(self, config: Config, store: Store, *, refresh_seconds: float = 5.0,
                 convert_timeout: float = 300.0, loader: Loader | None = None):
        self.config, self.store = config, store
        self.refresh_seconds = refresh_seconds
        self.started = time.time()
        self.metrics = Metrics()
        self.sandbox = Sandbox(config.inference.sandbox)
        self.generation = Generation(config.home / "inference" / "generation")
        self._synced = self.generation.current()
        self._sync_lock = threading.Lock()
        base_loader = loader or (lambda st, rec: load_serving_model(st, rec, convert_timeout=convert_timeout,
                                                                    sandbox=self.sandbox))
        self.models = ModelCache(store, config.inference.model_cache_size, self._counted(base_loader),
                                 negative_ttl=max(refresh_seconds, 0.5), stamp=self.generation.current)
        self.placements = PlacementCache(store, negative_ttl=max(refresh_seconds, 0.5))
        self.default = DefaultModel(config.home / "inference" / "default-model.json", self.generation)
        self.uploader = Uploader(store, self.models, config.inference.max_upload_bytes, convert_timeout,
                                 self.sandbox, self.changed)
        self.online = _online(config, store)
        self._site_models: tuple[float, int, list[tuple[str, str | None]]] | None = None
        self._gets, self._posts = itertools.count(), itertools.count()
        self.n_get = self.n_post = 0
        self._refresher_pid: int | None = None
        self._stop = threading.Event()

    def auth_state(self) -> str:
        """For /status and the log: how mutating routes are guarded."""
        inf = self.config.inference
        if not inf.auth:
            return "disabled (--no-auth)"
        problem = inf.token_problem()
        return f"closed: {problem}" if problem else "bearer token"

    def _counted(self, loader: Loader) -> Loader:
        def load(store: Store, record) -> ServingModel:
            model = loader(store, record)
            self.metrics.model_loads.labels(model.name).inc()
            return model
        return load

    # -- per request ----------------------------------------------------------------------
    def before_request(self) -> None:
        self.touch(request.method)

    def touch(self, method: str) -> None:
        """Per request: the refresh thread runs in this process; changes acknowledged by other
        workers are in force; count GETs and POSTs."""
        if self._refresher_pid != os.getpid():
            self._start_refresher()
        if self.generation.current() != self._synced:
            self._sync()
        if method == "GET":
            self.n_get = next(self._gets) + 1
        elif method == "POST":
            self.n_post = next(self._posts) + 1

    def resolve_model(self, name: object) -> ServingModel:
        """The named model, or the default one set by ``POST /params``."""
        if name is None or name == "":
            name = self.default.name
            if not name:
                raise APIError(400, "no model given and no default model set (POST /params)")
        if not isinstance(name, str):
            raise APIError(400, "model must be a string")
        return self.models.get(name)

    # -- read-your-writes across workers -----------------------------------------------------
    def changed(self) -> None:
        """Call after a change is committed (upload, delete): every worker drops stale entries
        before its next answer."""
        self.generation.bump()

    def _sync(self) -> None:
        with self._sync_lock:
            seen = self.generation.current()    # read first: a change during the sync syncs again
            if seen == self._synced:
                return
            for change in self.models.sync():
                log.info("sync: %s", change)
            self._synced = seen

    # -- background refresh ---------------------------------------------------------------
    def refresh_now(self) -> list[str]:
        changes = self.models.refresh() + self.placements.refresh()
        self.metrics.cached_models.set(len(self.models.cached()))
        return changes

    def _start_refresher(self) -> None:
        with _START_LOCK:
            if self._refresher_pid == os.getpid():
                return
            self._refresher_pid = os.getpid()
            if self.refresh_seconds <= 0:
                return
            threading.Thread(target=self._refresh_loop, name="smartcache-refresh", daemon=True).start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                for change in self.refresh_now():
                    log.info("refresh: %s", change)
            except Exception:  # noqa: BLE001 - the loop must survive a catalog outage
                log.exception("refresh failed; will retry")

    def next_gap_model(self, site: str) -> str | None:
        """The production next-read model for ``site``: one trained for it, else one for every site (newest);
        looked up in the catalog at most every refresh interval (or after a change another worker made)."""
        now = time.monotonic()
        stamp = self.generation.current()
        cached = self._site_models
        if cached is None or now - cached[0] > max(self.refresh_seconds, 1.0) or cached[1] != stamp:
            try:
                rows = self.store.production_models()
            except CatalogError:
                rows = [] if cached is None else None
            if rows is not None:
                cached = self._site_models = (now, stamp, [(n, p.get("site")) for n, _, p in rows
                                                             if p.get("policy") == "next-gap"])
        for name, for_site in cached[2]:
            if for_site == site:
                return name
        return next((name for name, for_site in cached[2] if for_site is None), None)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """A clean stop of this worker: buffered accesses written, the access state snapshotted."""
        self.stop()
        if self.online is not None:
            self.online.close()
            self.online = None


def _online(config: Config, store: Store):
    """The access state and feedback of this process (None when the config turns them off)."""
    if not getattr(config.inference, "access_state", True):
        return None
    from smartcache.inference.online import Online
    from smartcache.inference.state import Capacity
    return Online(config, store, capacity=Capacity(files=int(config.inference.state_files)))


_START_LOCK = threading.Lock()


def svc() -> Service:
    return current_app.extensions["smartcache"]


def check_token(config: InferenceConfig, header: str) -> None:
    """Fail closed: only ``--no-auth`` opens mutating routes; without a usable token they are shut."""
    if not config.auth:
        return
    problem = config.token_problem()
    if problem:
        raise APIError(503, f"mutating routes are closed: {problem} (set inference.token in config.toml)")
    scheme, _, given = header.partition(" ")
    # compare_digest on bytes: constant time in the length of the configured token
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8", "replace"),
                                                             str(config.token).encode()):
        raise APIError(401, "missing or invalid bearer token", {"WWW-Authenticate": 'Bearer realm="smartcache"'})


def require_token(view: Callable) -> Callable:
    """Mutating routes need ``Authorization: Bearer <token>`` (see :func:`check_token`)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        check_token(svc().config.inference, request.headers.get("Authorization", ""))
        return view(*args, **kwargs)
    wrapper._needs_token = True  # read by the OpenAPI builder
    return wrapper
