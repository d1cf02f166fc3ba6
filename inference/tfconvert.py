"""Inside the sandbox: TensorFlow models to TFLite, checked against the model itself.

``TFLiteConverter.from_saved_model`` does not freeze the variables of a Keras 3 model saved
with ``tf.saved_model.save`` (TF 2.21): its flatbuffer answers 0, 0.5, 1 or NaN. Converting
the loaded signature as a concrete function, with the loaded object as its trackable owner,
gives the model's own numbers. Whichever candidate is used, the result is checked: the
SavedModel's signature (or the frozen graph) and the TFLite model run on the same probe rows
(zeros and seeded random rows), and the largest absolute difference is measured. The
caller refuses a model above :data:`TOLERANCE`.

Runs in the sandboxed child only (imports TensorFlow).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from smartcache.catalog.errors import Invalid

TOLERANCE = 1e-4
PROBE_ROWS = 8
PROBE_SEED = 20240611


@dataclass(frozen=True)
class Converted:
    tflite: bytes
    method: str
    max_abs_diff: float
    probe_rows: int


def probe_rows(n_inputs: int) -> np.ndarray:
    """A row of zeros, then seeded standard-normal rows."""
    rng = np.random.default_rng(PROBE_SEED)
    return np.concatenate([np.zeros((1, n_inputs), np.float32),
                           rng.standard_normal((PROBE_ROWS - 1, n_inputs)).astype(np.float32)])


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def _tflite_outputs(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from smartcache.inference.runtime import Predictor
    return Predictor(tflite).predict(x)


def _best(candidates: list[tuple[str, Callable[[], bytes]]],
          reference: Callable[[np.ndarray], np.ndarray]) -> Converted:
    """Try each converter; keep the first within TOLERANCE, else report the closest."""
    from smartcache.inference.runtime import describe
    best: Converted | None = None
    errors = []
    for method, convert in candidates:
        try:
            tflite = bytes(convert())
            x = probe_rows(describe(tflite).n_inputs)
            want = np.asarray(reference(x), np.float32)
            got = _tflite_outputs(tflite, x)
        except Invalid as e:
            errors.append(f"{method}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - TF raises many unrelated types for bad models
            errors.append(f"{method}: {_first_line(e)}")
            continue
        if not np.all(np.isfinite(want)):
            raise Invalid("the model itself gives non-finite outputs on probe rows")
        if want.shape != got.shape:
            errors.append(f"{method}: the model gives {list(want.shape)}, its TFLite form {list(got.shape)}")
            continue
        diff = float(np.max(np.abs(want - got))) if np.all(np.isfinite(got)) else float("inf")
        if best is None or diff < best.max_abs_diff:
            best = Converted(tflite, method, diff, int(x.shape[0]))
        if diff <= TOLERANCE:
            return best
    if best is None:
        raise Invalid("cannot convert the model to TFLite: " + "; ".join(errors))
    raise Invalid(f"converted model differs from the original by up to {best.max_abs_diff:.3g} on "
                  f"{best.probe_rows} probe rows (more than {TOLERANCE:g}): refused")


# -- SavedModel --------------------------------------------------------------------------------
def _signature(loaded: Any) -> tuple[str, Any]:
    sigs = list(loaded.signatures.keys())
    if not sigs:
        raise Invalid("SavedModel has no serving signature")
    key = "serving_default" if "serving_default" in sigs else sigs[0]
    return key, loaded.signatures[key]


def _call_signature(fn: Any) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf
    args, kwargs = fn.structured_input_signature
    if args or len(kwargs) != 1:
        raise Invalid("the serving signature must take exactly one input tensor")
    (name, spec), = kwargs.items()
    if spec.dtype != tf.float32:
        raise Invalid(f"the serving signature's input must be float32, not {spec.dtype.name}")

    batch = spec.shape[0] if spec.shape.rank else None

    def call(x: np.ndarray) -> np.ndarray:
        out = fn(**{name: tf.constant(x)})
        values = list(out.values()) if isinstance(out, dict) else [out]
        if len(values) != 1:
            raise Invalid("the serving signature must give exactly one output tensor")
        return values[0].numpy()

    def run(x: np.ndarray) -> np.ndarray:
        if not batch:
            return call(x)
        # a signature traced for a fixed batch: call it on padded blocks of that size
        n = x.shape[0]
        padded = np.concatenate([x, np.zeros((-n % batch, x.shape[1]), np.float32)])
        return np.concatenate([call(padded[i:i + batch]) for i in range(0, len(padded), batch)])[:n]
    return run


def convert_savedmodel(path: Path) -> Converted:
    import tensorflow as tf
    try:
        loaded = tf.saved_model.load(str(path))
        key, fn = _signature(loaded)
    except Invalid:
        raise
    except Exception as e:  # noqa: BLE001
        raise Invalid(f"not a loadable SavedModel: {_first_line(e)}") from e
    reference = _call_signature(fn)
    candidates = [
        ("from_concrete_functions", lambda: tf.lite.TFLiteConverter.from_concrete_functions([fn], loaded).convert()),
        ("from_saved_model", lambda: tf.lite.TFLiteConverter.from_saved_model(str(path), signature_keys=[key]).convert()),
    ]
    return _best(candidates, reference)


# -- TF1 frozen graph --------------------------------------------------------------------------
def convert_graphdef(path: Path, input_node: str, output_node: str) -> Converted:
    if not input_node or not output_node:
        raise Invalid("a frozen graph needs inputNode and outputNode in params.json")
    import tensorflow as tf
    in_op, out_op = input_node.split(":")[0], output_node.split(":")[0]

    def convert() -> bytes:
        return tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(path), input_arrays=[in_op], output_arrays=[out_op]).convert()

    def reference(x: np.ndarray) -> np.ndarray:
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(path.read_bytes())
        with tf.Graph().as_default() as g:
            tf.compat.v1.import_graph_def(graph_def, name="")
            with tf.compat.v1.Session(graph=g) as sess:
                return sess.run(f"{out_op}:0", {f"{in_op}:0": x})

    return _best([("from_frozen_graph", convert)], reference)
