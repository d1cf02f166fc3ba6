"""The model contract between training and the inference service.

A served model is one catalog model version (``store.register_model``) with framework
:data:`FRAMEWORK` and these artifacts:

``tflite`` (required to serve)
    A TFLite flatbuffer: the fast in-process serving form. One float32 input of shape
    ``[batch, n_features]`` (batch may be -1/None), one float32 output ``[batch, k]``.
    For cache decisions ``k == 1`` and the output is the probability that the file is read
    again at the site within the label horizon (``k >= 2``: column 1 is that probability).
``savedmodel``
    A gzip tarball of the TF2 SavedModel directory whose single top-level folder is the
    model name (``<name>/saved_model.pb``, ``<name>/variables/...``): what TFaaS serves and
    what the service converts when ``tflite`` is missing. Build it with :func:`pack_savedmodel`.
``params``
    ``params.json`` bytes in TFaaS style (:data:`PARAM_KEYS`); :func:`parse_params` also
    accepts the 2023 snake_case keys (``input_node``, ``output_node``, ``op``, ``input_name``,
    ``output_name``).
``labels`` (optional)
    ``labels.txt``, one label per output column.

The model record carries ``input_features`` (the ordered feature names, the input columns)
and a ``params`` mapping (build it with :func:`record_params`) with these keys, all optional:

``tfaas``           the TFaaS params dict (as in the ``params`` artifact).
``normalization``   ``{"mean": [...], "std": [...]}`` applied as ``(x - mean) / std`` before the
                    model, one entry per feature. Prefer baking normalisation into the graph
                    (a Keras ``Normalization`` layer): then the TFLite form is self-contained and
                    this key is absent. :func:`export_keras` exports whatever graph it is given.
``threshold``       ``/decide`` answers ``store = score >= threshold`` (default 0.5).
``feature_defaults`` ``{feature: value}`` for features that ``/decide`` cannot derive for a file
                    it only knows by name (see :mod:`smartcache.inference.lfn`): the value a file
                    with no access history has (e.g. counts 0, days-since-last = the cap).

Only ``tensorflow`` is needed to *produce* artifacts (:func:`export_keras`,
:func:`tflite_from_savedmodel`); serving needs only the TFLite interpreter.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import tarfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from smartcache.catalog.base import check_name
from smartcache.catalog.errors import Invalid

FRAMEWORK = "tensorflow"
ART_TFLITE = "tflite"
ART_SAVEDMODEL = "savedmodel"
ART_PARAMS = "params"
ART_LABELS = "labels"
ART_GRAPHDEF = "graphdef"       # a TF1 frozen graph uploaded the TFaaS-2019 way

PARAM_KEYS = ("name", "model", "labels", "options", "inputNode", "outputNode", "description", "timestamp")
SNAKE_KEYS = {"input_node": "inputNode", "output_node": "outputNode"}
EXTRA_2023_KEYS = ("op", "input_name", "output_name")
# Keys of params.json beyond TFaaS that an uploader may give; they go to the model record.
RECORD_KEYS = ("input_features", "normalization", "threshold", "feature_defaults")

DEFAULT_THRESHOLD = 0.5
SAVEDMODEL_FILE = "saved_model.pb"


# -- params.json ------------------------------------------------------------------------------
def parse_params(data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """TFaaS params in the canonical camelCase form; 2023 snake_case keys are mapped.

    Unknown keys are kept (TFaaS clients add their own); values are type-checked.
    """
    raw = _load_json(data) if not isinstance(data, Mapping) else dict(data)
    if not isinstance(raw, dict):
        raise Invalid("params must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise Invalid("params keys must be strings")
        canon = SNAKE_KEYS.get(key, key)
        if canon in out and canon != key:
            continue  # camelCase wins when both spellings are given
        out[canon] = value
    for key in ("name", "model", "labels", "inputNode", "outputNode", "description", "timestamp",
                *EXTRA_2023_KEYS):
        if key in out and out[key] is not None and not isinstance(out[key], str):
            raise Invalid(f"params.{key} must be a string")
    if "options" in out and out["options"] is not None:
        if not isinstance(out["options"], (list, dict)):
            raise Invalid("params.options must be a list or an object")
    if out.get("name"):
        check_name(out["name"], "model name")
    return out


def params_json(params: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(params), indent=2, sort_keys=True).encode()


def _load_json(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise Invalid(f"params is not valid JSON: {e}") from e


def record_params(tfaas: Mapping[str, Any] | None = None, *, normalization: Mapping | None = None,
                  threshold: float | None = None, feature_defaults: Mapping[str, float] | None = None,
                  n_features: int | None = None, **extra: Any) -> dict[str, Any]:
    """The model record's ``params`` mapping, validated (see the module docstring)."""
    out: dict[str, Any] = dict(extra)
    if tfaas:
        out["tfaas"] = parse_params(tfaas)
    if normalization is not None:
        mean, std = check_normalization(normalization, n_features)
        out["normalization"] = {"mean": mean, "std": std}
    if threshold is not None:
        out["threshold"] = check_threshold(threshold)
    if feature_defaults is not None:
        out["feature_defaults"] = check_feature_defaults(feature_defaults)
    return out


def check_normalization(norm: Any, n_features: int | None) -> tuple[list[float], list[float]]:
    if not isinstance(norm, Mapping) or not {"mean", "std"} <= set(norm):
        raise Invalid('normalization must be {"mean": [...], "std": [...]}')
    mean, std = _floats(norm["mean"], "normalization.mean"), _floats(norm["std"], "normalization.std")
    if len(mean) != len(std) or (n_features is not None and len(mean) != n_features):
        raise Invalid(f"normalization needs one mean and one std per feature ({n_features or len(mean)})")
    if any(s <= 0 for s in std):
        raise Invalid("normalization.std must be > 0")
    return mean, std


def check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise Invalid("threshold must be a number in [0, 1]")
    return float(value)


def check_feature_defaults(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise Invalid("feature_defaults must be an object {feature: number}")
    return {str(k): _floats([v], f"feature_defaults.{k}")[0] for k, v in value.items()}


def _floats(values: Any, what: str) -> list[float]:
    if not isinstance(values, (list, tuple)):
        raise Invalid(f"{what} must be a list of numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise Invalid(f"{what} must hold finite numbers")
        out.append(float(v))
    return out


# -- artifact bytes ---------------------------------------------------------------------------
def is_tflite(data: bytes) -> bool:
    """TFLite flatbuffers carry the file identifier ``TFL3`` at offset 4."""
    return len(data) > 8 and data[4:8] == b"TFL3"


def is_gzip(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def pack_savedmodel(directory: Path | str, name: str) -> bytes:
    """A reproducible gzip tarball of a SavedModel directory, top-level folder ``name``."""
    check_name(name, "model name")
    root = Path(directory)
    if not (root / SAVEDMODEL_FILE).is_file():
        raise Invalid(f"{root} is not a SavedModel directory (no {SAVEDMODEL_FILE})")
    buf = io.BytesIO()
    # mtime=0 and sorted, owner-less members: the same model packs to the same checksum.
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in [root, *sorted(root.rglob("*"))]:
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                continue  # never pack links or special files
            info = tar.gettarinfo(str(path), arcname=str(Path(name) / path.relative_to(root)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buf.getvalue()


def unpack_savedmodel(data: bytes, dest: Path | str, *, max_bytes: int = 1 << 30,
                      name: str | None = None) -> tuple[str, Path]:
    """Safely extract a SavedModel tarball into ``dest``; returns (top-level name, model dir).

    Refuses absolute paths, ``..``, links and devices (see :mod:`smartcache.inference.tarsafe`).
    """
    from smartcache.inference.tarsafe import extract_bundle
    top = extract_bundle(data, Path(dest), max_bytes=max_bytes)
    if name is not None and top != name:
        raise Invalid(f"bundle folder {top!r} does not match model name {name!r}")
    model_dir = Path(dest) / top
    if not (model_dir / SAVEDMODEL_FILE).is_file():
        raise Invalid(f"bundle has no {top}/{SAVEDMODEL_FILE}: not a SavedModel")
    return top, model_dir


def build_artifacts(name: str, tflite: bytes, *, savedmodel: bytes | None = None,
                    params: Mapping[str, Any] | None = None,
                    labels: Iterable[str] | None = None) -> dict[str, bytes]:
    """The ``artifacts`` mapping for ``store.register_model`` (``savedmodel`` = packed tarball)."""
    check_name(name, "model name")
    if not is_tflite(tflite):
        raise Invalid("tflite artifact is not a TFLite flatbuffer")
    out = {ART_TFLITE: bytes(tflite)}
    if savedmodel is not None:
        if not is_gzip(savedmodel):
            raise Invalid("savedmodel artifact must be a gzip tarball (use pack_savedmodel)")
        out[ART_SAVEDMODEL] = bytes(savedmodel)
    p = parse_params(params or {})
    p.setdefault("name", name)
    p.setdefault("model", "model.tflite")
    if p["name"] != name:
        raise Invalid(f"params.name {p['name']!r} does not match model name {name!r}")
    out[ART_PARAMS] = params_json(p)
    if labels is not None:
        out[ART_LABELS] = "".join(f"{label}\n" for label in labels).encode()
    return out


# -- producing artifacts (needs tensorflow) ---------------------------------------------------
def tflite_from_savedmodel(directory: Path | str) -> bytes:
    """Convert a SavedModel directory to a TFLite flatbuffer that gives the model's own outputs
    (checked on probe rows, see :mod:`smartcache.inference.tfconvert`; imports tensorflow).
    For the project's own trusted exports: uploads are converted in a sandbox instead."""
    from smartcache.inference.tfconvert import convert_savedmodel
    return convert_savedmodel(Path(directory)).tflite


def export_keras(model: Any, name: str, workdir: Path | str, *, description: str = "",
                 labels: Iterable[str] | None = None, params: Mapping[str, Any] | None = None
                 ) -> dict[str, bytes]:
    """Export a Keras model to the three artifacts (SavedModel tarball, TFLite, params.json).

    Bake normalisation into ``model`` (a ``keras.layers.Normalization`` first layer) so the
    TFLite form is self-contained.
    """
    from datetime import datetime, timezone
    check_name(name, "model name")
    target = Path(workdir) / name
    model.export(str(target), verbose=False)
    tflite = tflite_from_savedmodel(target)
    p = {"name": name, "model": "model.tflite", "labels": "labels.txt" if labels else "",
         "options": [], "inputNode": "", "outputNode": "", "description": description,
         "timestamp": datetime.now(timezone.utc).isoformat(), **(params or {})}
    from smartcache.inference.runtime import describe
    info = describe(tflite)
    p["inputNode"] = p["inputNode"] or info.input_name
    p["outputNode"] = p["outputNode"] or info.output_name
    return build_artifacts(name, tflite, savedmodel=pack_savedmodel(target, name), params=p, labels=labels)


def register(store: Any, name: str, artifacts: Mapping[str, bytes], *, input_features: Iterable[str],
             normalization: Mapping | None = None, threshold: float | None = None,
             feature_defaults: Mapping[str, float] | None = None, params: Mapping[str, Any] | None = None,
             **kwargs: Any) -> Any:
    """``store.register_model`` with the record params of this contract filled in.

    ``kwargs`` go to ``register_model`` (metrics, datasets, description, run_id, stage, ...);
    ``params`` are extra record params (e.g. training hyper-parameters).
    """
    features = list(input_features)
    tfaas = parse_params(artifacts[ART_PARAMS]) if ART_PARAMS in artifacts else None
    rec = record_params(tfaas, normalization=normalization, threshold=threshold,
                        feature_defaults=feature_defaults, n_features=len(features) or None, **dict(params or {}))
    return store.register_model(name, FRAMEWORK, dict(artifacts), input_features=features, params=rec, **kwargs)
