"""The routes of CMS TFaaS, same shapes: models, params, predictions, upload, delete, status."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Response, request

from smartcache.catalog import __version__
from smartcache.catalog.base import check_name
from smartcache.inference import modelformat as mf
from smartcache.inference.bodylimit import body_limit
from smartcache.inference.errors import APIError
from smartcache.inference.models import ServingModel, record_tfaas_params
from smartcache.inference.runtime import runtime_name
from smartcache.inference.service import Service, require_token, svc
from smartcache.inference.upload import parse_request

bp = Blueprint("tfaas", __name__)

JSON_MAX_BYTES = 16 << 20
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_ROWS = 100_000
MAX_VERSION = 2**31 - 1     # the catalog's integer column


def json_response(obj: Any, status: int = 200) -> Response:
    # allow_nan=False: a NaN that slipped through is a 500 with a JSON body, never bare NaN
    return Response(json.dumps(obj, allow_nan=False), status=status, mimetype="application/json")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def read_body() -> bytes:
    """The request body: at most JSON_MAX_BYTES whatever the framing (see bodylimit.py)."""
    return request.get_data(cache=False)


def parse_json(data: bytes) -> Any:
    """JSON from any content type (TFaaS clients vary); NaN and Infinity are refused."""
    try:
        # decoding first spares json.loads guessing the encoding of bytes
        return json.loads(data.decode(), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise APIError(400, f"malformed JSON: {e}") from e


def json_body() -> Any:
    return parse_json(read_body())


# -- predictions ----------------------------------------------------------------------------
def _row(values: list, n: int, i: int | None = None) -> list:
    if len(values) != n:
        where = "" if i is None else f" in row {i}"
        raise APIError(400, f"model takes {n} values, got {len(values)}{where}")
    for v in values:
        # bool and str are refused; the range test also refuses NaN and what float32 cannot hold
        if (type(v) is not float and type(v) is not int) or not -FLOAT32_MAX <= v <= FLOAT32_MAX:
            where = "" if i is None else f" in row {i}"
            if type(v) is float or type(v) is int:
                raise APIError(400, f"values must be finite float32 numbers (|v| <= 3.4e38){where}")
            raise APIError(400, f"values must be numbers, got {json.dumps(v)[:40]}{where}")
    return values


def input_matrix(values: Any, keys: Any, model: ServingModel) -> tuple[np.ndarray, bool]:
    """Validated float32 ``[rows, n_inputs]`` and whether the request was a single row."""
    if not isinstance(values, list) or not values:
        raise APIError(400, "values must be a non-empty list of numbers (or of rows)")
    n = model.n_inputs
    nested = [isinstance(v, list) for v in values]
    if all(nested):
        if len(values) > MAX_ROWS:
            raise APIError(413, f"at most {MAX_ROWS} rows per request")
        rows, single = [_row(r, n, i) for i, r in enumerate(values)], False
    elif not any(nested):
        rows, single = [_row(values, n)], True
    else:
        raise APIError(400, "values must be all numbers (one row) or all lists (rows)")
    x = np.array(rows, dtype=np.float32)    # every value checked above: numbers within range
    if keys is not None:
        x = _by_keys(x, keys, model)
    return x, single


def _by_keys(x: np.ndarray, keys: Any, model: ServingModel) -> np.ndarray:
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise APIError(400, "keys must be a list of strings")
    if not keys:
        return x
    if len(keys) != x.shape[1]:
        raise APIError(400, f"{len(keys)} keys for {x.shape[1]} values")
    feats = list(model.input_features)
    if not feats or keys == feats:
        return x           # TFaaS models know no feature names: keys are informative only
    if len(set(keys)) != len(keys) or set(keys) != set(feats):
        raise APIError(400, f"keys do not match the inputs of {model.ref}: expected {feats}")
    return x[:, [keys.index(f) for f in feats]]


def predict_bytes(s: Service, data: bytes) -> bytes:
    """The whole of ``POST /json``: request body in, JSON array out (also the WSGI fast path)."""
    body = parse_json(data)
    if not isinstance(body, dict):
        raise APIError(400, 'body must be a JSON object {"keys": [...], "values": [...], "model": "name"}')
    model = s.resolve_model(body.get("model"))
    x, single = input_matrix(body.get("values"), body.get("keys"), model)
    y = model.predict(x)
    s.metrics.count_rows(model.name, x.shape[0])
    if not np.isfinite(y).all():
        # inputs within float32 can still overflow inside the model: say so, never answer NaN
        raise APIError(422, f"{model.ref} gives a non-finite output (NaN or infinity) for these values")
    return json.dumps(y[0].tolist() if single else y.tolist()).encode()


@bp.post("/json")
@bp.post("/predict/json")
def predict_json() -> Response:
    return Response(predict_bytes(svc(), read_body()), mimetype="application/json")


# -- models and params ----------------------------------------------------------------------
@bp.get("/models")
def list_models() -> Response:
    return json_response([record_tfaas_params(r) for r in served_records(svc())])


@bp.get("/params/<model>")
def get_params(model: str) -> Response:
    check_name(model, "model name")
    return json_response(record_tfaas_params(svc().store.get_model(model)))


@bp.get("/params")
def get_default_params() -> Response:
    return json_response(svc().default.get())


@bp.post("/params")
@require_token
def set_default_params() -> Response:
    s = svc()
    params = mf.parse_params(_as_object(json_body()))
    name = params.get("name")
    if not name:
        raise APIError(400, "params need a model name")
    record = s.store.get_model(name)            # 404 for an unknown model
    s.default.set(params)
    return json_response({"default": name, "model": record.ref})


def _as_object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise APIError(400, "params must be a JSON object")
    return body


# -- upload and delete ----------------------------------------------------------------------
@bp.post("/upload")
@bp.post("/bundle")     # TFaaS 2023 name for the tarball upload
@body_limit(lambda: svc().config.inference.max_upload_bytes)
@require_token
def upload() -> Response:
    s = svc()
    try:
        with tempfile.TemporaryDirectory(prefix="smartcache-upload-") as tmp:
            up = parse_request(request, Path(tmp), s.config.inference.max_upload_bytes)
            model = s.uploader.upload(up, Path(tmp))
    except Exception:
        s.metrics.uploads.labels("refused").inc()
        raise
    s.metrics.uploads.labels("ok").inc()
    return json_response({"model": model.ref, "name": model.name, "version": model.version,
                          "inputs": model.n_inputs, "input_features": list(model.input_features),
                          "conversion": model.params.get("conversion")})


@bp.delete("/delete/<model>")
@require_token
def delete_model(model: str) -> Response:
    return _delete(model)


@bp.delete("/delete")
@require_token
def delete_model_form() -> Response:
    name = request.form.get("model") or request.args.get("model")
    if not name:
        raise APIError(400, "request does not provide model")
    return _delete(name)


def parse_version(raw: str | None) -> int | None:
    """A model version from a query or form: a decimal integer in 1..MAX_VERSION, or None."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_VERSION)):
        raise APIError(400, f"version must be an integer from 1 to {MAX_VERSION}, not {raw[:40]!r}")
    version = int(raw)
    if not 1 <= version <= MAX_VERSION:
        raise APIError(400, f"version must be an integer from 1 to {MAX_VERSION}, not {raw[:40]!r}")
    return version


def _delete(name: str) -> Response:
    s = svc()
    check_name(name, "model name")
    version_n = parse_version(request.args.get("version") or request.form.get("version"))
    n = s.store.delete_model(name, version_n)
    s.models.evict(name)
    if s.default.name == name and version_n is None:
        s.default.set({})
    s.changed()      # the other workers drop it before their next answer
    return json_response({"deleted": name, "versions": n})


def served_records(s: Service) -> list:
    """The served version of each model name in the catalog (production first, else newest)."""
    served: dict[str, Any] = {}
    for rec in s.store.list_models():   # ordered by name, version
        cur = served.get(rec.name)
        if cur is None or cur.stage != "production" or rec.stage == "production":
            served[rec.name] = rec
    return list(served.values())


@bp.get("/status")
def status() -> Response:
    s = svc()
    load = os.getloadavg()
    return json_response({
        "status": "ok", "version": __version__, "runtime": runtime_name(), "pid": os.getpid(),
        "Uptime": round(time.time() - s.started, 3), "getRequests": s.n_get, "postRequests": s.n_post,
        "Load": {"load1": load[0], "load5": load[1], "load15": load[2]},
        "Memory": {"rss_bytes": _rss_bytes()},
        "default_model": s.default.name,
        # the catalog's served versions (what /models lists); loaded_models: in this worker's cache
        "models": [r.ref for r in served_records(s)],
        "loaded_models": [m.ref for m in s.models.cached()], "model_cache_size": s.models.capacity,
        "auth": s.auth_state(), "sandbox": s.sandbox.describe(),
        "sites": {sl.site: {"placement": sl.placement.id if sl.placement else None, "files": len(sl.scores)}
                  for sl in s.placements.loaded()},
        # tracked files and datasets, bytes per tracked file, feedback written/pending (see inference/online.py)
        "access_state": s.online.stats() if s.online is not None else None,
    })


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        return 0
