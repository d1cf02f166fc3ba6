"""The OpenAPI 3 document of every route (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from smartcache.catalog import __version__

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"}
_ERR = {"$ref": "#/components/schemas/Error"}
_OBJ = {"type": "object"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _resp(desc: str, schema: dict | None = None) -> dict:
    out: dict[str, Any] = {"description": desc}
    if schema is not None:
        out["content"] = _json(schema)
    return out


def _errors(*codes: int) -> dict:
    text = {400: "Bad request", 401: "Missing or wrong bearer token", 404: "Not found",
            405: "Method not allowed", 409: "Conflict", 413: "Too large",
            422: "The model gives a non-finite output for these values",
            503: "Catalog unavailable, no usable token configured (mutating routes closed), "
                 "or no sandbox to convert an upload in"}
    return {str(c): _resp(text[c], _ERR) for c in codes}


def _op(summary: str, ok: dict, *codes: int, params: list | None = None, body: dict | None = None,
        secured: bool = False) -> dict:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(*codes, 503)}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    if secured:
        op["security"] = [{"bearer": []}]
        op["responses"].update(_errors(401))
    return op


def _q(name: str, schema: dict, required: bool = False, desc: str = "") -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": desc}


def _path(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or _NAME}


OPEN = {"type": "object", "required": ["site", "lfn"],
        "properties": {"site": {"type": "string"}, "lfn": {"type": "string", "maxLength": 4096},
                       "size": {"type": "number", "minimum": 0}, "ts": {"type": "number", "minimum": 0}}}
OPENS = {"type": "object", "required": ["opens"],
         "properties": {"opens": {"type": "array", "items": OPEN, "maxItems": 10000}, "model": {"type": "string"}}}
ACCESSES = {"type": "object", "required": ["accesses"],
            "properties": {"accesses": {"type": "array", "items": OPEN, "maxItems": 10000}}}

ROW = {
    "type": "object",
    "properties": {
        "keys": {"type": "array", "items": {"type": "string"}, "description": "feature names (optional)"},
        "values": {"oneOf": [{"type": "array", "items": {"type": "number"}, "minItems": 1},
                             {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                              "minItems": 1}],
                   "description": "one row of numbers, or a list of rows (batched)"},
        "model": {"type": "string", "description": "model name; the default model when absent"},
    },
    "required": ["values"],
}
PREDICTION = {"oneOf": [{"type": "array", "items": {"type": "number"}},
                        {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}]}
PARAMS = {"type": "object", "properties": {k: {"type": "string"} for k in
                                           ("name", "model", "labels", "inputNode", "outputNode",
                                            "description", "timestamp", "input_node", "output_node")},
          "additionalProperties": True}
DECISION = {"type": "object", "required": ["store", "score", "model", "source"],
            "properties": {"store": {"type": "boolean"}, "score": {"type": "number"},
                           "model": {"type": "string", "nullable": True},
                           "source": {"type": "string", "enum": ["list", "model", "default"]}}}
VERSION = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
UPLOAD_FORM = {"type": "object", "required": ["name", "model"],
               "properties": {"name": {"type": "string"},
                              "params": {"type": "string", "format": "binary"},
                              "model": {"type": "string", "format": "binary"},
                              "labels": {"type": "string", "format": "binary"}}}


def build() -> dict[str, Any]:
    p: dict[str, Any] = {
        "/models": {"get": _op("Every model's params (the served version of each name)",
                               _resp("params list", {"type": "array", "items": PARAMS}))},
        "/params/{model}": {"get": _op("Params of one model", _resp("params", PARAMS), 400, 404,
                                       params=[_path("model")])},
        "/params": {
            "get": _op("The default model's params", _resp("params", PARAMS)),
            "post": _op("Set the default model", _resp("ok", _OBJ), 400, 404, 413,
                        body={"required": True, "content": _json(PARAMS)}, secured=True)},
        "/json": {"post": _op("Predict (TFaaS JSON row, or rows)", _resp("output row(s)", PREDICTION),
                              400, 404, 413, 422, body={"required": True, "content": _json(ROW)})},
        "/predict/json": {"post": _op("Predict (same as /json)", _resp("output row(s)", PREDICTION),
                                      400, 404, 413, 422, body={"required": True, "content": _json(ROW)})},
        "/upload": {"post": _op(
            "Upload a model: multipart (name, params, model, labels) or a gzip SavedModel tarball",
            _resp("registered version", _OBJ), 400, 404, 409, 413, secured=True,
            params=[_q("name", {"type": "string"}, desc="expected bundle folder name")],
            body={"required": True, "content": {
                "multipart/form-data": {"schema": UPLOAD_FORM},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})},
        "/delete/{model}": {"delete": _op("Delete a model (all versions, or ?version=N)",
                                          _resp("deleted", _OBJ), 400, 404, secured=True,
                                          params=[_path("model"), _q("version", VERSION)])},
        "/delete": {"delete": _op("Delete a model named by form field model", _resp("deleted", _OBJ),
                                  400, 404, secured=True,
                                  params=[_q("model", {"type": "string"}), _q("version", VERSION)])},
        "/status": {"get": _op("Server status", _resp("status", _OBJ))},
        "/decide": {"get": _op("Should the site's cache hold this file? (an access: updates the site's state)",
                               _resp("decision", DECISION), 400, 404, params=[
                                   _q("site", {"type": "string"}, True), _q("lfn", {"type": "string"}, True),
                                   _q("size", {"type": "number"}, desc="file size in bytes (optional)"),
                                   _q("ts", {"type": "number"}, desc="time of the open, epoch s (default: now)"),
                                   _q("model", {"type": "string"}, desc="model to ask for unlisted files")]),
                    "post": _op("Many opens at once, in time order", _resp("decisions", {"type": "array",
                                                                                       "items": DECISION}),
                                400, 404, 413, body={"required": True, "content": _json(OPENS)})},
        "/access": {"post": _op("Opens observed without asking: they update the access state and the feedback",
                                _resp("recorded", {"type": "object", "properties": {"recorded": {"type": "integer"}}}),
                                400, 413, body={"required": True, "content": _json(ACCESSES)}, secured=True)},
        "/placements/{site}": {"get": _op("A site's placement lists and current files",
                                          _resp("placements", _OBJ), 400, 404,
                                          params=[_path("site"), _q("files", {"type": "integer"},
                                                                    desc="how many top files to list")])},
        "/healthz": {"get": _op("Liveness (deep=1 also checks the catalog)", _resp("ok", _OBJ),
                                params=[_q("deep", {"type": "string"})])},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": _resp("OpenAPI 3 document", _OBJ)}}},
    }
    p["/bundle"] = {"post": {**p["/upload"]["post"], "summary": "Upload a gzip SavedModel tarball (TFaaS name)"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "smartcache inference (TFaaS-compatible)", "version": __version__},
        "paths": p,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
