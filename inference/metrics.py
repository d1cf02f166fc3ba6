"""Prometheus metrics of the inference service (prometheus-client).

Each app has its own registry (tests build many apps). Under gunicorn with several worker
processes, ``smartcache serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports
prometheus_client; values then live in per-process files and ``/metrics`` aggregates them,
whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.02, 0.1, 1.0, 10.0)


def _multiprocess_values() -> None:
    """prometheus_client picks its value class when first imported; if that happened before
    ``smartcache serve`` set the environment variable (a forked worker), pick again."""
    from prometheus_client import values
    if os.environ.get(MULTIPROC_ENV) and not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()


class Metrics:
    def __init__(self) -> None:
        _multiprocess_values()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("smartcache_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("smartcache_http_request_seconds", "Request handling time",
                                 ["route"], buckets=_BUCKETS, registry=r)
        self.rows = Counter("smartcache_predicted_rows", "Rows scored by model", ["model"], registry=r)
        self.decisions = Counter("smartcache_decisions", "/decide answers by source and verdict",
                                 ["source", "store"], registry=r)
        self.model_loads = Counter("smartcache_model_loads", "Model versions loaded into memory",
                                   ["model"], registry=r)
        self.uploads = Counter("smartcache_uploads", "Model uploads by outcome", ["outcome"], registry=r)
        self.cached_models = Gauge("smartcache_cached_models", "Models held in memory", registry=r,
                                   multiprocess_mode="livesum")
        self._children: dict[tuple[str, str, str], tuple] = {}
        self._rows: dict[str, Any] = {}
        self._decisions: dict[tuple[str, bool], Any] = {}

    def count_rows(self, model: str, n: int) -> None:
        child = self._rows.get(model)
        if child is None:
            child = self.rows.labels(model)
            if len(self._rows) < 4096:
                self._rows[model] = child
        child.inc(n)

    def count_decision(self, source: str, store: bool) -> None:
        """One /decide answer (label children cached: ``labels()`` costs more than the increment)."""
        child = self._decisions.get((source, store))
        if child is None:
            child = self.decisions.labels(source, str(store).lower())
            if len(self._decisions) < 64:
                self._decisions[(source, store)] = child
        child.inc()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and its time (label children cached: this runs on every request)."""
        key = (route, method, str(status))
        child = self._children.get(key)
        if child is None:
            child = (self.requests.labels(*key), self.latency.labels(route))
            if len(self._children) < 4096:   # bounded: route patterns x methods x statuses
                self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def exposition(self) -> Response:
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            body = generate_latest(registry)
        else:
            body = generate_latest(self.registry)
        return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": CONTENT_TYPE_LATEST})

    def install(self, app: Flask) -> None:
        """Time and count every request, labelled by its route pattern (bounded cardinality)."""

        @app.before_request
        def _start() -> None:
            g._t0 = time.perf_counter()

        @app.after_request
        def _count(resp: Response) -> Response:
            rule = request.url_rule
            t0 = g.get("_t0")
            self.observe(rule.rule if rule is not None else "unmatched", request.method, resp.status_code,
                         time.perf_counter() - t0 if t0 is not None else 0.0)
            return resp
