"""Cache queries: ``GET /decide`` (should site S hold file L?) and ``GET /placements/<site>``.

``/decide`` answers, in this order:

1. ``source: "list"`` -- the file is on the site's current placement list: ``store`` true,
   ``score`` the list's score, ``model`` the version that made the list.
2. ``source: "model"`` -- otherwise, the model (``model=`` query parameter, else the one that
   made the site's list, else the default model of ``POST /params``) scores a feature row
   built from the LFN (see :mod:`smartcache.inference.lfn`) and its ``feature_defaults``;
   ``store = score >= threshold`` (model params, default 0.5).
3. ``source: "default"`` -- when no model applies (none configured, or one of its features
   is neither derivable from the name nor defaulted): ``store`` false, ``score`` 0.0. Not on
   the list means not chosen: the site's cache keeps its own admission policy for it.
"""

from __future__ import annotations

import math
from typing import Mapping

from flask import Blueprint, Response, request

from smartcache.catalog.errors import CatalogError, NotFound
from smartcache.inference.errors import APIError
from smartcache.inference.lfn import feature_row
from smartcache.inference.models import ServingModel
from smartcache.inference.service import Service, svc
from smartcache.inference.tfaas import json_response

bp = Blueprint("cache", __name__)

MAX_LFN = 4096
DEFAULT_ANSWER = {"store": False, "score": 0.0, "model": None, "source": "default"}


def _size_arg(args: Mapping[str, str]) -> float | None:
    raw = args.get("size")
    if raw is None or raw == "":
        return None
    try:
        size = float(raw)
    except ValueError as e:
        raise APIError(400, "size must be a number of bytes") from e
    if not math.isfinite(size) or size < 0:
        raise APIError(400, "size must be a finite, non-negative number of bytes")
    return size


def _decision_model(s: Service, args: Mapping[str, str], list_model: str | None) -> ServingModel | None:
    name = args.get("model") or (list_model.rsplit(":", 1)[0] if list_model else None) \
        or s.default.name
    if not name:
        return None
    try:
        return s.models.get(name)
    except NotFound:
        if args.get("model"):
            raise   # asked for by name: say it does not exist
        return None


def decide_answer(s: Service, args: Mapping[str, str]) -> dict:
    """The whole of ``GET /decide`` on the query arguments (also the WSGI fast path)."""
    site, lfn = args.get("site", ""), args.get("lfn", "")
    if not site or not lfn:
        raise APIError(400, "decide needs site= and lfn=")
    if len(lfn) > MAX_LFN:
        raise APIError(400, f"lfn longer than {MAX_LFN} characters")
    size = _size_arg(args)
    listed = s.placements.get(site)
    score = listed.scores.get(lfn)
    if score is not None:
        s.metrics.decisions.labels("list", "true").inc()
        return {"store": True, "score": score, "model": listed.model, "source": "list"}
    answer = _model_answer(s, args, listed.model, site, lfn, size)
    s.metrics.decisions.labels(answer["source"], str(answer["store"]).lower()).inc()
    return answer


@bp.get("/decide")
def decide() -> Response:
    return json_response(decide_answer(svc(), request.args))


def _model_answer(s: Service, args: Mapping[str, str], list_model: str | None, site: str, lfn: str,
                  size: float | None) -> dict:
    model = _decision_model(s, args, list_model)
    if model is None or not model.input_features:
        return DEFAULT_ANSWER
    row = feature_row(lfn, model.input_features, model.feature_defaults, size, site)
    if row is None:
        return DEFAULT_ANSWER
    out = model.predict(row)[0]
    p = float(out[1] if out.shape[0] >= 2 else out[0])
    if not math.isfinite(p):
        return DEFAULT_ANSWER
    return {"store": p >= model.threshold, "score": p, "model": model.ref, "source": "model"}


@bp.get("/placements/<site>")
def placements(site: str) -> Response:
    s = svc()
    try:
        limit = int(request.args.get("files", "0"))
    except ValueError as e:
        raise APIError(400, "files must be an integer") from e
    if not 0 <= limit <= 100_000:
        raise APIError(400, "files must be between 0 and 100000")
    listed = s.placements.get(site)
    try:
        history = s.store.list_placements(site)
    except CatalogError:
        history = []
    top = sorted(listed.scores.items(), key=lambda kv: -kv[1])[:limit] if limit else []
    return json_response({
        "site": site,
        "current": listed.placement.to_dict() if listed.placement else None,
        "loaded_files": len(listed.scores),
        "placements": [p.to_dict() for p in history],
        "files": [{"lfn": lfn, "score": sc} for lfn, sc in top],
    })
