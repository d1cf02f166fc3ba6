"""The in-process TFLite runtime: a thread-safe predictor over a pool of interpreters.

A TFLite interpreter is not thread-safe, and gunicorn's gthread workers serve several
requests at once; so each :class:`Predictor` keeps a pool of interpreters, one per thread
that needs one at the same time. A call takes an idle interpreter (or builds one), runs,
and puts it back: no lock is held while the model runs.

LiteRT (``ai_edge_litert``) is preferred: it is small and needs no TensorFlow. TensorFlow's
own ``tf.lite`` interpreter is the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from smartcache.catalog.errors import Invalid

MAX_BUCKET = 1024   # rows per interpreter call for large batches


def interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the environment
        from tensorflow.lite.python.interpreter import Interpreter
    return Interpreter


def runtime_name() -> str:
    try:
        import ai_edge_litert
        return f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"
    except ImportError:  # pragma: no cover
        import tensorflow as tf
        return f"tensorflow.lite {tf.__version__}"


@dataclass(frozen=True)
class ModelInfo:
    n_inputs: int
    n_outputs: int
    input_name: str
    output_name: str


def _new_interpreter(tflite: bytes):
    try:
        it = interpreter_class()(model_content=tflite, num_threads=1)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise Invalid(f"not a usable TFLite model: {e}") from e
    return it


def describe(tflite: bytes) -> ModelInfo:
    """Check the model has the served shape (one float32 [batch, n] in, one [batch, k] out)."""
    it = _new_interpreter(tflite)
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise Invalid(f"model must have one input and one output, has {len(ins)} and {len(outs)}")
    i, o = ins[0], outs[0]
    if i["dtype"] != np.float32 or o["dtype"] != np.float32:
        raise Invalid("model input and output must be float32")
    if len(i["shape"]) != 2 or len(o["shape"]) != 2:
        raise Invalid(f"model must map [batch, n] to [batch, k], not {list(i['shape'])} -> {list(o['shape'])}")
    names = _signature_names(it)
    return ModelInfo(int(i["shape"][1]), int(o["shape"][1]), names[0] or i["name"], names[1] or o["name"])


def _signature_names(it) -> tuple[str, str]:
    try:
        sigs = it.get_signature_list()
    except (ValueError, RuntimeError):  # pragma: no cover - old runtimes
        return "", ""
    sig = sigs.get("serving_default") or next(iter(sigs.values()), None)
    if not sig or len(sig.get("inputs", [])) != 1 or len(sig.get("outputs", [])) != 1:
        return "", ""
    return sig["inputs"][0], sig["outputs"][0]


class _Slot:
    """One interpreter and the batch size its tensors are allocated for."""

    __slots__ = ("it", "batch", "inp", "out")

    def __init__(self, tflite: bytes):
        self.it = _new_interpreter(tflite)
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]
        self.batch = int(self.it.get_input_details()[0]["shape"][0])

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] != self.batch:
            self.it.resize_tensor_input(self.inp, list(x.shape), strict=False)
            self.it.allocate_tensors()
            self.batch = x.shape[0]
        self.it.set_tensor(self.inp, x)
        self.it.invoke()
        return self.it.get_tensor(self.out)  # a copy: safe after the slot is reused


class Predictor:
    """Thread-safe batched prediction over one TFLite model."""

    def __init__(self, tflite: bytes, mean: list[float] | None = None, std: list[float] | None = None):
        self.info = describe(tflite)
        self._tflite = tflite
        self._idle: list[_Slot] = [_Slot(tflite)]
        self._mean = np.asarray(mean, dtype=np.float32) if mean is not None else None
        self._std = np.asarray(std, dtype=np.float32) if std is not None else None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``x``: float32 ``[n, n_inputs]``, already validated; returns float32 ``[n, k]``."""
        if self._mean is not None:
            x = (x - self._mean) / self._std
        x = np.ascontiguousarray(x, dtype=np.float32)
        try:
            slot = self._idle.pop()       # list.pop/append are atomic under the GIL
        except IndexError:
            slot = _Slot(self._tflite)
        try:
            n = x.shape[0]
            if n == 1:
                return slot.run(x)
            return np.concatenate([self._bucketed(slot, x[i:i + MAX_BUCKET]) for i in range(0, n, MAX_BUCKET)])
        finally:
            self._idle.append(slot)

    @staticmethod
    def _bucketed(slot: _Slot, chunk: np.ndarray) -> np.ndarray:
        # Pad to a power of two so that varied batch sizes do not reallocate every call.
        n = chunk.shape[0]
        size = 1 << (n - 1).bit_length()
        if size != n:
            chunk = np.concatenate([chunk, np.zeros((size - n, chunk.shape[1]), np.float32)])
        return slot.run(chunk)[:n]

    @property
    def pool_size(self) -> int:
        return len(self._idle)
