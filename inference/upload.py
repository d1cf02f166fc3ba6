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
import io
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable

from flask import Request

from smartcache.catalog import Store
from smartcache.catalog.base import check_name
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.inference import modelformat as mf
from smartcache.inference.convert import Conversion, convert_in_child
from smartcache.inference.errors import APIError
from smartcache.inference.models import ModelCache, ServingModel
from smartcache.inference.runtime import Predictor
from smartcache.inference.sandbox import Sandbox
from smartcache.inference.tarsafe import Prefixed, extract_stream

UNPACK_FACTOR = 4   # a bundle may unpack to this many times the upload limit, no more
_GZIP = b"\x1f\x8b"


@dataclass
class Upload:
    name: str
    kind: str                       # tflite | savedmodel | graphdef
    model: bytes                    # the model file (empty for a savedmodel: see model_dir)
    params: dict[str, Any]
    labels: bytes | None = None
    model_dir: Path | None = None   # the extracted SavedModel folder
    extra: dict[str, Any] = field(default_factory=dict)


def parse_request(req: Request, work: Path, max_bytes: int) -> Upload:
    """Read either upload shape into an :class:`Upload`, extracting bundles under ``work`` as they
    stream in (no model code runs here)."""
    if req.mimetype == "multipart/form-data":
        return _from_form(req, work, max_bytes)
    head = req.stream.read(2)
    if req.headers.get("Content-Encoding", "").lower() == "gzip" or head == _GZIP:
        if head != _GZIP:
            raise APIError(400, "body is not gzip data")
        name = req.args.get("name")
        top, folder = _extract(Prefixed(head, req.stream), work, max_bytes)
        if name and name != top:
            raise Invalid(f"bundle folder {top!r} does not match name {name!r}")
        pfile, lfile = folder / "params.json", folder / "labels.txt"
        params = _params(pfile.read_bytes() if pfile.is_file() else b"{}", top)
        labels = lfile.read_bytes() if lfile.is_file() else None
        return Upload(top, "savedmodel", b"", params, labels, model_dir=folder)
    raise APIError(400, "upload must be multipart/form-data (name, params, model, labels) "
                        "or a gzip tarball of a SavedModel folder")


def _extract(stream: BinaryIO, work: Path, max_bytes: int) -> tuple[str, Path]:
    dest = work / "bundle"
    dest.mkdir()
    top = extract_stream(stream, dest, max_bytes=max_bytes * UNPACK_FACTOR)
    folder = dest / top
    if not (folder / mf.SAVEDMODEL_FILE).is_file():
        raise Invalid(f"bundle has no {top}/{mf.SAVEDMODEL_FILE}: not a SavedModel")
    return top, folder


def _from_form(req: Request, work: Path, max_bytes: int) -> Upload:
    name = req.form.get("name", "")
    if not name:
        raise APIError(400, "request does not provide name")
    check_name(name, "model name")
    model_file = req.files.get("model")
    if model_file is None:
        raise APIError(400, "request does not provide model")
    params = _params(_part(req, "params") or b"{}", name)
    labels = _part(req, "labels")
    stream: BinaryIO = model_file.stream
    if req.headers.get("Content-Encoding", "").lower() == "base64":
        try:
            stream = io.BytesIO(base64.b64decode(model_file.read(), validate=False))
        except (binascii.Error, ValueError) as e:
            raise APIError(400, f"model is not base64: {e}") from e
    head = stream.read(2)
    if head == _GZIP:   # a SavedModel bundle: extract as it is read
        top, folder = _extract(Prefixed(head, stream), work, max_bytes)
        if top != name:
            raise Invalid(f"bundle folder {top!r} does not match model name {name!r}")
        return Upload(name, "savedmodel", b"", params, labels, model_dir=folder)
    model = head + stream.read()
    return Upload(name, _kind(model), model, params, labels)


def _kind(model: bytes) -> str:
    if mf.is_tflite(model):
        return "tflite"
    if model[:2] == b"PK":
        raise APIError(400, "Keras .keras/.h5 files are not served: upload a SavedModel bundle or TFLite")
    if model:
        return "graphdef"
    raise APIError(400, "model file is empty")


def _part(req: Request, key: str) -> bytes | None:
    """A form part sent as a file (``-F params=@f``) or as a text field (``-F params=<f``)."""
    if key in req.files:
        return req.files[key].read()
    if key in req.form:
        return req.form[key].encode()
    return None


def _params(data: bytes, name: str) -> dict[str, Any]:
    params = mf.parse_params(data or b"{}")
    if params.get("name") and params["name"] != name:
        raise Invalid(f"mismatch of name={name} and params.json name={params['name']}")
    params["name"] = name
    params.setdefault("timestamp", datetime.now(timezone.utc).isoformat())
    return params


class Uploader:
    """Checks, converts, registers and swaps in uploaded models (one upload at a time per process)."""

    def __init__(self, store: Store, cache: ModelCache, max_bytes: int, convert_timeout: float,
                 sandbox: Sandbox = Sandbox(), on_change: Callable[[], None] = lambda: None):
        self.store, self.cache = store, cache
        self.max_bytes, self.convert_timeout = max_bytes, convert_timeout
        self.sandbox, self.on_change = sandbox, on_change
        self._lock = threading.Lock()

    def upload(self, up: Upload, work: Path) -> ServingModel:
        """Convert (sandboxed, checked), register and serve ``up``; ``work`` is a scratch folder."""
        self._record_params(up.params, None, None)     # refuse bad params before converting anything
        with self._lock:
            conv = self._convert(up, work)
            features, rec_params = self._record_fields(up, conv)
            mean, std = (rec_params["normalization"]["mean"], rec_params["normalization"]["std"]) \
                if "normalization" in rec_params else (None, None)
            predictor = Predictor(conv.tflite, mean, std)   # must load here too before anything changes
            artifacts = {mf.ART_TFLITE: conv.tflite, mf.ART_PARAMS: mf.params_json(up.params)}
            if up.model_dir is not None:
                artifacts[mf.ART_SAVEDMODEL] = mf.pack_savedmodel(up.model_dir, up.name)
            elif up.kind == "graphdef":
                artifacts[mf.ART_GRAPHDEF] = up.model
            if up.labels is not None:
                artifacts[mf.ART_LABELS] = up.labels
            record = self.store.register_model(
                up.name, mf.FRAMEWORK, artifacts, input_features=features, params=rec_params,
                description=up.params.get("description") or None, stage="production",
                stage_reason="uploaded via /upload")
            model = ServingModel(record.name, record.version, record.stage, record.created,
                                 tuple(features), rec_params, predictor)
            self.cache.install(model)
            self.on_change()
            return model

    def _convert(self, up: Upload, work: Path) -> Conversion:
        if up.kind == "graphdef" and not (up.params.get("inputNode") and up.params.get("outputNode")):
            raise Invalid("a frozen graph needs inputNode and outputNode in params.json")
        if up.model_dir is not None:
            source = up.model_dir
        else:
            source = work / ("model.pb" if up.kind == "graphdef" else "model.tflite")
            source.write_bytes(up.model)
        return convert_in_child(up.kind, source, input_node=up.params.get("inputNode") or "",
                                output_node=up.params.get("outputNode") or "",
                                timeout=self.convert_timeout, sandbox=self.sandbox)

    def _record_fields(self, up: Upload, conv: Conversion) -> tuple[list[str], dict[str, Any]]:
        """Input features and record params; refuses a model whose width contradicts them."""
        p, info = up.params, conv.info
        features = p.get("input_features")
        if features is not None:
            if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
                raise Invalid("params.input_features must be a list of feature names")
            if len(features) != info.n_inputs:
                raise Invalid(f"mismatched model: params list {len(features)} input features, "
                              f"the model takes {info.n_inputs}")
        else:
            features = self._inherited_features(up.name, info.n_inputs)
        return list(features), self._record_params(p, info.n_inputs, conv)

    @staticmethod
    def _record_params(p: dict[str, Any], n_inputs: int | None, conv: Conversion | None) -> dict[str, Any]:
        extra = {k: v for k, v in p.items() if k not in mf.RECORD_KEYS}
        conversion = {"conversion": conv.record()} if conv is not None else {}
        return mf.record_params(extra, normalization=p.get("normalization"), threshold=p.get("threshold"),
                                feature_defaults=p.get("feature_defaults"), n_features=n_inputs, **conversion)

    def _inherited_features(self, name: str, n_inputs: int) -> list[str]:
        try:
            current = self.store.get_model(name)
        except NotFound:
            return []
        if current.input_features and len(current.input_features) != n_inputs:
            raise Invalid(f"mismatched model: {current.ref} takes {len(current.input_features)} inputs "
                          f"({', '.join(current.input_features[:5])}...), the upload takes {n_inputs}; "
                          "give input_features in params.json to change them")
        return list(current.input_features) if current.input_features else []
