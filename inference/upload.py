"""``POST /upload``: TFaaS model uploads, checked, converted and registered as catalog versions.

Two request shapes, as TFaaS clients send them:

* ``multipart/form-data`` with ``name``, ``params`` (params.json), ``model`` and ``labels``
  files. ``model`` may be a TFLite flatbuffer, a gzip tarball of a SavedModel folder, or a
  TF1 frozen graph (``.pb``; needs ``inputNode``/``outputNode``). ``Content-Encoding: base64``
  means the model part is base64 text (TFaaS 2019).
* a body that is a gzip tarball of a SavedModel folder (``Content-Encoding: gzip``), whose one
  top-level folder is the model name; ``params.json`` and ``labels.txt`` inside it are used.

Nothing is registered or swapped in before the model has been converted and probed in a
child process and loaded here: a corrupt or mismatched upload is a 400 and leaves the served
version untouched.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Request

from smartcache.catalog import Store
from smartcache.catalog.base import check_name
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.inference import modelformat as mf
from smartcache.inference.convert import convert_in_child
from smartcache.inference.errors import APIError
from smartcache.inference.models import ModelCache, ServingModel
from smartcache.inference.runtime import ModelInfo, Predictor

UNPACK_FACTOR = 4   # a bundle may unpack to this many times the upload limit, no more


@dataclass
class Upload:
    name: str
    kind: str                       # tflite | savedmodel | graphdef
    model: bytes                    # the model file (a bundle tarball for savedmodel)
    params: dict[str, Any]
    labels: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_request(req: Request, max_bytes: int) -> Upload:
    """Read either upload shape into an :class:`Upload` (no model code runs here)."""
    if req.mimetype == "multipart/form-data":
        return _from_form(req)
    body = req.get_data(cache=False)
    if req.headers.get("Content-Encoding", "").lower() == "gzip" or mf.is_gzip(body):
        if not mf.is_gzip(body):
            raise APIError(400, "body is not gzip data")
        return _from_bundle(body, req.args.get("name"), max_bytes)
    raise APIError(400, "upload must be multipart/form-data (name, params, model, labels) "
                        "or a gzip tarball of a SavedModel folder")


def _from_form(req: Request) -> Upload:
    name = req.form.get("name", "")
    if not name:
        raise APIError(400, "request does not provide name")
    check_name(name, "model name")
    model_file = req.files.get("model")
    if model_file is None:
        raise APIError(400, "request does not provide model")
    model = model_file.read()
    if req.headers.get("Content-Encoding", "").lower() == "base64":
        try:
            model = base64.b64decode(model, validate=False)
        except (binascii.Error, ValueError) as e:
            raise APIError(400, f"model is not base64: {e}") from e
    params = _params(_part(req, "params") or b"{}", name)
    labels = _part(req, "labels")
    if mf.is_tflite(model):
        kind = "tflite"
    elif mf.is_gzip(model):
        kind = "savedmodel"
    elif model[:2] == b"PK":
        raise APIError(400, "Keras .keras/.h5 files are not served: upload a SavedModel bundle or TFLite")
    elif model:
        kind = "graphdef"
    else:
        raise APIError(400, "model file is empty")
    return Upload(name, kind, model, params, labels)


def _part(req: Request, key: str) -> bytes | None:
    """A form part sent as a file (``-F params=@f``) or as a text field (``-F params=<f``)."""
    if key in req.files:
        return req.files[key].read()
    if key in req.form:
        return req.form[key].encode()
    return None


def _from_bundle(body: bytes, name: str | None, max_bytes: int) -> Upload:
    from smartcache.inference.tarsafe import extract_bundle
    with tempfile.TemporaryDirectory(prefix="smartcache-bundle-") as tmp:
        top = extract_bundle(body, Path(tmp), max_bytes=max_bytes * UNPACK_FACTOR)
        if name and name != top:
            raise Invalid(f"bundle folder {top!r} does not match name {name!r}")
        folder = Path(tmp) / top
        pfile, lfile = folder / "params.json", folder / "labels.txt"
        params = _params(pfile.read_bytes() if pfile.is_file() else b"{}", top)
        labels = lfile.read_bytes() if lfile.is_file() else None
    return Upload(top, "savedmodel", body, params, labels)


def _params(data: bytes, name: str) -> dict[str, Any]:
    params = mf.parse_params(data or b"{}")
    if params.get("name") and params["name"] != name:
        raise Invalid(f"mismatch of name={name} and params.json name={params['name']}")
    params["name"] = name
    params.setdefault("timestamp", datetime.now(timezone.utc).isoformat())
    return params


class Uploader:
    """Checks, converts, registers and swaps in uploaded models (one upload at a time per process)."""

    def __init__(self, store: Store, cache: ModelCache, max_bytes: int, convert_timeout: float):
        self.store, self.cache = store, cache
        self.max_bytes, self.convert_timeout = max_bytes, convert_timeout
        self._lock = threading.Lock()

    def upload(self, up: Upload) -> ServingModel:
        self._record_params(up.params, None)     # refuse bad params before converting anything
        with self._lock:
            with tempfile.TemporaryDirectory(prefix="smartcache-upload-") as tmp:
                tflite, info, source_art = self._convert(up, Path(tmp))
            features, rec_params = self._record_fields(up, info)
            mean, std = (rec_params["normalization"]["mean"], rec_params["normalization"]["std"]) \
                if "normalization" in rec_params else (None, None)
            predictor = Predictor(tflite, mean, std)   # must load here too before anything changes
            artifacts = {mf.ART_TFLITE: tflite, mf.ART_PARAMS: mf.params_json(up.params), **source_art}
            if up.labels is not None:
                artifacts[mf.ART_LABELS] = up.labels
            record = self.store.register_model(
                up.name, mf.FRAMEWORK, artifacts, input_features=features, params=rec_params,
                description=up.params.get("description") or None, stage="production",
                stage_reason="uploaded via /upload")
            model = ServingModel(record.name, record.version, record.stage, record.created,
                                 tuple(features), rec_params, predictor)
            self.cache.install(model)
            return model

    def _convert(self, up: Upload, tmp: Path) -> tuple[bytes, ModelInfo, dict[str, bytes]]:
        if up.kind == "savedmodel":
            name, model_dir = mf.unpack_savedmodel(up.model, tmp, max_bytes=self.max_bytes * UNPACK_FACTOR)
            if name != up.name:
                raise Invalid(f"bundle folder {name!r} does not match model name {up.name!r}")
            tflite, info = convert_in_child("savedmodel", model_dir, timeout=self.convert_timeout)
            return tflite, info, {mf.ART_SAVEDMODEL: mf.pack_savedmodel(model_dir, up.name)}
        if up.kind == "graphdef" and not (up.params.get("inputNode") and up.params.get("outputNode")):
            raise Invalid("a frozen graph needs inputNode and outputNode in params.json")
        src = tmp / ("model.pb" if up.kind == "graphdef" else "model.tflite")
        src.write_bytes(up.model)
        tflite, info = convert_in_child(up.kind, src, input_node=up.params.get("inputNode") or "",
                                        output_node=up.params.get("outputNode") or "",
                                        timeout=self.convert_timeout)
        return tflite, info, ({mf.ART_GRAPHDEF: up.model} if up.kind == "graphdef" else {})

    def _record_fields(self, up: Upload, info: ModelInfo) -> tuple[list[str], dict[str, Any]]:
        """Input features and record params; refuses a model whose width contradicts them."""
        p = up.params
        features = p.get("input_features")
        if features is not None:
            if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
                raise Invalid("params.input_features must be a list of feature names")
            if len(features) != info.n_inputs:
                raise Invalid(f"mismatched model: params list {len(features)} input features, "
                              f"the model takes {info.n_inputs}")
        else:
            features = self._inherited_features(up.name, info)
        return list(features), self._record_params(p, info.n_inputs)

    @staticmethod
    def _record_params(p: dict[str, Any], n_inputs: int | None) -> dict[str, Any]:
        return mf.record_params({k: v for k, v in p.items() if k not in mf.RECORD_KEYS},
                                normalization=p.get("normalization"), threshold=p.get("threshold"),
                                feature_defaults=p.get("feature_defaults"), n_features=n_inputs)

    def _inherited_features(self, name: str, info: ModelInfo) -> list[str]:
        try:
            current = self.store.get_model(name)
        except NotFound:
            return []
        if current.input_features and len(current.input_features) != info.n_inputs:
            raise Invalid(f"mismatched model: {current.ref} takes {len(current.input_features)} inputs "
                          f"({', '.join(current.input_features[:5])}...), the upload takes {info.n_inputs}; "
                          "give input_features in params.json to change them")
        return list(current.input_features) if current.input_features else []
