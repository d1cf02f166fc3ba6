"""Operations routes: liveness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, request

from smartcache.catalog.errors import SmartcacheError
from smartcache.inference import openapi
from smartcache.inference.service import svc
from smartcache.inference.tfaas import json_response

bp = Blueprint("ops", __name__)
_DOC: dict | None = None


@bp.get("/healthz")
def healthz() -> Response:
    if request.args.get("deep") in ("1", "true", "yes"):
        try:
            svc().store.list_sites()
        except SmartcacheError as e:
            return json_response({"status": "error", "error": f"catalog: {e}"}, 503)
        return json_response({"status": "ok", "catalog": "ok"})
    return json_response({"status": "ok"})


@bp.get("/metrics")
def metrics() -> Response:
    return svc().metrics.exposition()


@bp.get("/openapi.json")
def openapi_json() -> Response:
    global _DOC
    if _DOC is None:
        _DOC = openapi.build()
    return json_response(_DOC)
