"""Per-route request body limits that hold whatever the framing.

A chunked body has no Content-Length, and Werkzeug's own maximum cuts such a stream off at
the limit without saying so (the view sees a truncated body). Here every request's input is
wrapped before a view runs: a declared Content-Length over the route's limit is a 413 at
once, and a stream that goes past it is a 413 at the first byte too many, never a silently
truncated body. Views declare a larger limit with :func:`body_limit`; every other route gets
the app's default.
"""

from __future__ import annotations

import io
from typing import Callable

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

_DRAIN_CHUNK = 1 << 20


class CappedInput(io.RawIOBase):
    """``wsgi.input`` that raises 413 once more than ``limit`` bytes are read from it."""

    def __init__(self, stream, limit: int):
        self.stream, self.limit, self.n = stream, limit, 0

    def readable(self) -> bool:
        return True

    def _count(self, data: bytes) -> bytes:
        self.n += len(data)
        if self.n > self.limit:
            raise RequestEntityTooLarge(f"request body larger than {self.limit} bytes")
        return data

    def read(self, size: int | None = -1) -> bytes:
        room = self.limit + 1 - self.n           # one byte more than allowed proves the overrun
        return self._count(self.stream.read(room if size is None or size < 0 else min(size, room)))

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        room = self.limit + 1 - self.n
        return self._count(self.stream.readline(room if size is None or size < 0 else min(size, room)))


def body_limit(limit: Callable[[], int]) -> Callable:
    """Give a view its own body limit (``limit()`` is called per request, in app context)."""
    def mark(view: Callable) -> Callable:
        view._body_limit = limit
        return view
    return mark


def _before_request() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    limit_of = getattr(view, "_body_limit", None)
    limit = limit_of() if limit_of else current_app.config["BODY_LIMIT"]
    if (request.content_length or 0) > limit:
        raise RequestEntityTooLarge(f"request body larger than {limit} bytes")
    request.environ["wsgi.input"] = CappedInput(request.environ["wsgi.input"], limit)
    # CappedInput enforces the limit exactly; Werkzeug's own would truncate a stream silently
    request.max_content_length = None


def _drain(response: Response) -> Response:
    """Read what the view left of the body (within the limit) before answering: a client still
    sending gets the answer (say a 400 or a bomb's 413) instead of a broken pipe."""
    stream = request.environ.get("wsgi.input")
    if isinstance(stream, CappedInput):
        try:
            while stream.read(_DRAIN_CHUNK):
                pass
        except (RequestEntityTooLarge, OSError, ValueError):
            pass      # over the limit, or the client is gone: the server closes the connection
    return response


def install(app: Flask, default: int) -> None:
    app.config["BODY_LIMIT"] = default
    app.before_request(_before_request)
    app.after_request(_drain)
