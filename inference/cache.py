"""Cache queries: ``GET /decide`` (should site S hold file L?), its batch form ``POST /decide``,
``POST /access`` (opens observed without asking) and ``GET /placements/<site>``.

Every query is an access: it updates the site's access state and is kept as feedback (see
:mod:`smartcache.inference.online`), once, whatever the answer. ``/decide`` answers, in this order:

1. ``source: "list"`` -- the file is on the site's current placement list: ``store`` true,
   ``score`` the list's score, ``model`` the version that made the list.
2. ``source: "model"`` -- otherwise, the model (``model=`` query parameter, else the one that
   made the site's list, else the default model of ``POST /params``) scores the request: a next-read
   model from the site's access state (the features the simulator computes for the same request),
   ``score`` = P(read again within its ``decide_horizon_s``); an older model from a feature row built
   from the LFN (see :mod:`smartcache.inference.lfn`) and its ``feature_defaults``;
   ``store = score >= threshold`` (model params, default 0.5).
3. ``source: "default"`` -- when no model applies (none configured, or one of its features
   is neither derivable from the name nor defaulted): ``store`` false, ``score`` 0.0. Not on
   the list means not chosen: the site's cache keeps its own admission policy for it.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

from flask import Blueprint, Response, request

from smartcache.catalog.errors import CatalogError, NotFound
from smartcache.inference.errors import APIError
from smartcache.inference.lfn import feature_row
from smartcache.inference.models import ServingModel
from smartcache.inference.online import DEFAULT_HORIZON_S
from smartcache.tasks.common.nextgap import decide_probability
from smartcache.inference.service import Service, require_token, svc
from smartcache.inference.tfaas import json_response

bp = Blueprint("cache", __name__)

MAX_LFN = 4096
MAX_BATCH = 10_000
DEFAULT_ANSWER = {"store": False, "score": 0.0, "model": None, "source": "default"}
OBSERVED = "smartcache.observed"     # environ key: this request's access is already in the state


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


def _decision_model(s: Service, args: Mapping[str, str], list_model: str | None,
                    site: str | None = None) -> ServingModel | None:
    name = args.get("model") or (list_model.rsplit(":", 1)[0] if list_model else None) \
        or s.default.name or (s.next_gap_model(site) if site else None)
    if not name:
        return None
    try:
        return s.models.get(name)
    except NotFound:
        if args.get("model"):
            raise   # asked for by name: say it does not exist
        return None


def _ts_arg(args: Mapping[str, Any]) -> float:
    raw = args.get("ts")
    if raw is None or raw == "":
        return time.time()
    try:
        ts = float(raw)
    except (TypeError, ValueError) as e:
        raise APIError(400, "ts must be epoch seconds") from e
    if not math.isfinite(ts) or not 0 <= ts < 1e11:
        raise APIError(400, "ts must be epoch seconds (a finite number)")
    return ts


def _site_lfn(args: Mapping[str, Any]) -> tuple[str, str]:
    site, lfn = args.get("site", ""), args.get("lfn", "")
    if not isinstance(site, str) or not isinstance(lfn, str) or not site or not lfn:
        raise APIError(400, "decide needs site= and lfn=")
    if len(lfn) > MAX_LFN or len(site) > 256:
        raise APIError(400, f"lfn longer than {MAX_LFN} characters (or site longer than 256)")
    return site, lfn


def decide_answer(s: Service, args: Mapping[str, Any], memo: dict | None = None) -> dict:
    """The whole of ``GET /decide`` on the query arguments (also the WSGI fast path and the batch route).

    ``memo`` carries what was done already for this request (the access recorded once, whatever retries).
    """
    site, lfn = _site_lfn(args)
    size, ts = _size_arg(args), _ts_arg(args)
    listed = s.placements.get(site)
    model = _decision_model(s, args, listed.model, site)
    memo = {} if memo is None else memo
    if "features" not in memo:
        memo["features"] = s.online.observe_one(site, lfn, size, ts) if s.online is not None else None
    score = listed.scores.get(lfn)
    if score is not None:
        answer = {"store": True, "score": score, "model": listed.model, "source": "list"}
    else:
        answer = _model_answer(s, model, memo["features"], site, lfn, size)
    if s.online is not None and not memo.get("recorded"):
        s.online.record_one(ts, site, lfn, size, "decide", answer["score"], answer["model"])
        memo["recorded"] = True
        s.online.maybe_snapshot()
    s.metrics.count_decision(answer["source"], answer["store"])
    return answer


@bp.get("/decide")
def decide() -> Response:
    return json_response(decide_answer(svc(), request.args, request.environ.setdefault(OBSERVED, {})))


@bp.post("/decide")
def decide_batch() -> Response:
    """Many opens at once, in time order: ``{"opens": [{"site", "lfn", "size"?, "ts"?}, ...], "model"?}``
    (or a bare list); each is an access, answered like ``GET /decide``."""
    s = svc()
    opens, extra = _batch_body(request.get_json(silent=True), "opens")
    memos = request.environ.setdefault(OBSERVED, {})
    return json_response([decide_answer(s, {**extra, **o}, memos.setdefault(i, {})) for i, o in enumerate(opens)])


@bp.post("/access")
@require_token
def access() -> Response:
    """Opens a source observed without asking (``{"accesses": [{"site", "lfn", "size"?, "ts"?}, ...]}``):
    they update the access state and the feedback, exactly as queries do."""
    s = svc()
    if s.online is None:
        raise APIError(503, "the access state is off in this service")
    rows, _ = _batch_body(request.get_json(silent=True), "accesses")
    parsed = [(*_site_lfn(r), _size_arg(r), _ts_arg(r)) for r in rows]
    if request.environ.get(OBSERVED) is None:
        request.environ[OBSERVED] = True
        sites, lfns, sizes, ts = (list(c) for c in zip(*parsed)) if parsed else ([], [], [], [])
        if parsed:
            s.online.observe(sites, lfns, sizes, ts)
            s.online.record(ts, sites, lfns, sizes, "access")
    return json_response({"recorded": len(parsed)})


def _batch_body(body: Any, key: str) -> tuple[list[dict], dict]:
    if isinstance(body, dict):
        items, extra = body.get(key), {k: v for k, v in body.items() if k == "model" and isinstance(v, str)}
    else:
        items, extra = body, {}
    if not isinstance(items, list) or not all(isinstance(o, dict) for o in items):
        raise APIError(400, f'the body must be {{"{key}": [{{"site": ..., "lfn": ..., "size": ..., "ts": ...}}, ...]}}')
    if len(items) > MAX_BATCH:
        raise APIError(413, f"at most {MAX_BATCH} {key} a request")
    return [{k: (str(v) if k in ("size", "ts") and v is not None else v) for k, v in o.items()} for o in items], extra


def _model_answer(s: Service, model: ServingModel | None, features, site: str, lfn: str, size: float | None) -> dict:
    if model is None or not model.input_features:
        return DEFAULT_ANSWER
    if model.params.get("policy") == "next-gap":
        return _next_gap_answer(model, features)
    row = feature_row(lfn, model.input_features, model.feature_defaults, size, site)
    if row is None:
        return DEFAULT_ANSWER
    out = model.predict(row)[0]
    p = float(out[1] if out.shape[0] >= 2 else out[0])
    if not math.isfinite(p):
        return DEFAULT_ANSWER
    return {"store": p >= model.threshold, "score": p, "model": model.ref, "source": "model"}


def _next_gap_answer(model: ServingModel, features) -> dict:
    """A next-read model scores the access from its features: P(read again within the decide horizon)."""
    if features is None:
        return DEFAULT_ANSWER
    probs = model.predict(features.reshape(1, -1))
    edges = model.params.get("gap_edges") or []
    if probs.shape[-1] != len(edges) + 1:
        return DEFAULT_ANSWER
    # one row in, one out: as Python floats (exactly the float32 values) it is cheaper to check and sum
    row = probs[0].tolist()
    if not all(map(math.isfinite, row)):
        return DEFAULT_ANSWER
    p = decide_probability(row, float(model.params.get("decide_horizon_s", DEFAULT_HORIZON_S)), edges)
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
