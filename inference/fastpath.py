"""A WSGI fast path for the two hot routes, ``POST /json`` and ``GET /decide``.

Flask's per-request machinery (request context, URL map, hooks, response object) costs more
than scoring a row. For these two routes, on the success path only, this middleware calls
the very same functions the Flask views call (:func:`~smartcache.inference.tfaas.predict_bytes`,
:func:`~smartcache.inference.cache.decide_answer`) straight from the WSGI environ. Anything
else -- another route, a chunked or oversized body, and *every* error -- goes to Flask, with
the body replayed, so errors keep one handler and one JSON shape.
"""

from __future__ import annotations

import io
import json
import math
import time
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from smartcache.inference.cache import OBSERVED, decide_answer
from smartcache.inference.service import Service
from smartcache.inference.tfaas import JSON_MAX_BYTES, predict_bytes

JSON_PATHS = ("/json", "/predict/json")


class FastPath:
    def __init__(self, app: Callable, service: Service):
        self.app, self.service = app, service

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if method == "POST" and path in JSON_PATHS:
            return self._json(environ, start_response, path)
        if method == "GET" and path == "/decide":
            return self._decide(environ, start_response)
        return self.app(environ, start_response)

    def _json(self, environ: dict, start_response: Callable, path: str) -> Iterable[bytes]:
        try:
            n = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            n = -1
        if not 0 <= n <= JSON_MAX_BYTES or environ.get("HTTP_TRANSFER_ENCODING"):
            return self.app(environ, start_response)
        t0 = time.perf_counter()
        data = environ["wsgi.input"].read(n)
        try:
            self.service.touch("POST")
            body = predict_bytes(self.service, data)
        except Exception:  # noqa: BLE001 - Flask redoes it and answers the error properly
            environ["wsgi.input"] = io.BytesIO(data)
            return self.app(environ, start_response)
        return self._ok(start_response, body, path, "POST", t0)

    def _decide(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        t0 = time.perf_counter()
        try:
            self.service.touch("GET")
            args = query_args(environ.get("QUERY_STRING", ""))
            # the access is recorded once: a Flask retry after an error finds it in the memo
            body = answer_json(decide_answer(self.service, args, environ.setdefault(OBSERVED, {})))
        except Exception:  # noqa: BLE001
            return self.app(environ, start_response)
        return self._ok(start_response, body, "/decide", "GET", t0)

    def _ok(self, start_response: Callable, body: bytes, route: str, method: str, t0: float) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        self.service.metrics.observe(route, method, 200, time.perf_counter() - t0)
        return [body]


def query_args(qs: str) -> dict[str, str]:
    """``parse_qsl(qs, keep_blank_values=True)``, the first value of a name winning (as ``request.args.get``
    does), with the same unquoting; but a field without ``%`` or ``+`` is taken as it is, not unquoted."""
    args: dict[str, str] = {}
    for field in qs.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in field or "+" in field:
            name, value = _unquote(name), _unquote(value)
        if name not in args:
            args[name] = value
    return args


def _unquote(text: str) -> str:
    text = text.replace("+", " ")
    # an LFN's slashes (%2F) are all a path usually needs escaped: replaced, 15x cheaper than unquote
    plain = text.replace("%2F", "/").replace("%2f", "/")
    return plain if "%" not in plain else unquote(text)


_STRINGS: dict[Any, str] = {}
_KEYS = ("store", "score", "model", "source")      # json.dumps writes a dict's keys in its order


def answer_json(answer: dict) -> bytes:
    """``json.dumps(answer).encode()`` of a /decide answer, the same bytes, formatted directly: the encoder's
    setup costs more than the four fields (a finite float's JSON is its ``repr``; anything else, json.dumps)."""
    store, score, model, source = (answer.get("store"), answer.get("score"), answer.get("model"),
                                   answer.get("source"))
    if tuple(answer) != _KEYS or type(store) is not bool or type(score) is not float or not math.isfinite(score) \
            or not (model is None or type(model) is str) or type(source) is not str:
        return json.dumps(answer).encode()
    m, s = _STRINGS.get(model), _STRINGS.get(source)
    if m is None or s is None:
        m, s = json.dumps(model), json.dumps(source)
        if len(_STRINGS) < 4096:       # model versions and three sources: bounded all the same
            _STRINGS[model], _STRINGS[source] = m, s
    return f'{{"store": {"true" if store else "false"}, "score": {score!r}, "model": {m}, "source": {s}}}'.encode()
