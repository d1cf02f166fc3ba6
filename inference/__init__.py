"""The inference service: TFaaS-compatible model serving and cache decisions over the catalog.

``create_app`` is imported lazily: training imports ``smartcache.inference.modelformat``
without pulling in Flask, and ``smartcache serve`` must set up Prometheus's multiprocess
mode before any worker imports the app.
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any):
    """See :func:`smartcache.inference.app.create_app`."""
    from smartcache.inference.app import create_app as _create_app
    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
