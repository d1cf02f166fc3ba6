"""One error type for the HTTP layer and one handler that turns every error into JSON.

Every response that is not a success is ``{"error": "..."}`` with a 4xx/5xx status. User
errors (:class:`APIError`, the catalog's :class:`SmartcacheError` family, Werkzeug's HTTP
errors) keep their message; anything unexpected is logged with its traceback and answered
with a bare 500, never a traceback.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from smartcache.catalog.errors import (AlreadyExists, ConfigError, Invalid, NotFound, SmartcacheError,
                                       Unavailable)

log = logging.getLogger("smartcache.inference")


class APIError(Exception):
    """An error the client caused (or may retry), with its HTTP status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _status_of(e: SmartcacheError) -> int:
    status = getattr(e, "http_status", None)     # e.g. tarsafe.BundleTooLarge: 413
    if isinstance(status, int):
        return status
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, AlreadyExists):
        return 409
    if isinstance(e, Invalid):
        return 400
    if isinstance(e, Unavailable):
        return 503
    if isinstance(e, ConfigError):
        return 500
    return 400


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    resp = Response(json.dumps({"error": message}), status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def handle_error(e: Exception) -> Response:
    if isinstance(e, APIError):
        return error_response(e.status, e.message, e.headers)
    if isinstance(e, SmartcacheError):
        status = _status_of(e)
        if status >= 500:
            log.error("server-side error: %s", e)
        return error_response(status, str(e))
    if isinstance(e, HTTPException):
        headers = {k: v for k, v in e.get_headers() if k.lower() == "allow"}
        return error_response(e.code or 500, e.description or e.name, headers)
    log.exception("unhandled error")
    return error_response(500, "internal server error")


def install(app: Flask) -> None:
    app.register_error_handler(Exception, handle_error)
