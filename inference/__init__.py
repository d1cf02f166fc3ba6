"""The inference service: TFaaS-compatible model serving and cache decisions over the catalog."""

from smartcache.inference.app import create_app

__all__ = ["create_app"]
