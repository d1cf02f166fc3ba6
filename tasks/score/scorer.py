"""The fast scorer: a catalog model's TFLite form run by the LiteRT interpreter, in batches.

``load_scorer(store, "cachenet")`` (or ``"cachenet:3"``, or ``version=3``) returns a :class:`Scorer`:

- ``scorer(x)`` with a 2-D float32 array of the model's ``input_features`` (``FEATURE_COLUMNS``
  order) returns a 1-D float32 array of probabilities;
- ``scorer(table)`` with a ``pyarrow.Table`` trace (``timestamp, site, lfn, size`` in time order, what
  the cache simulator passes, see :mod:`smartcache.tasks.simulate.model`) first derives the past-only core
  features of every request with :mod:`smartcache.tasks.features.task`, then scores them.

``scorer.threshold`` is the model's operating point (from its metrics), ``scorer.ref`` its
``name:version``; ``scorer.decay_days`` and ``scorer.admit_threshold`` (from its params, None for models
without them) tell the cache simulator how to use the scores (see :mod:`smartcache.tasks.simulate.model`).
The normalisation is inside the graph, so the raw feature values go in as they are.
The interpreter runs fixed power-of-two batches (default 4096 rows): tensors are allocated once per
size, memory stays bounded however many rows are scored, and one call costs ~µs per row.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from smartcache.catalog.errors import Invalid, SmartcacheError

DEFAULT_BATCH = 4096    # measured: 2k-4k rows per call is fastest (fits in cache); 64k is 2x slower


def interpreter_class() -> Any:
    """LiteRT's interpreter when ``ai-edge-litert`` is installed, else TensorFlow's own."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the environment
        import os
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    return Interpreter


class Scorer:
    """Batched TFLite inference over one model; not thread-safe (one per thread)."""

    def __init__(self, tflite: bytes, input_features: Sequence[str], *, ref: str = "model",
                 threshold: float = 0.5, batch_rows: int = DEFAULT_BATCH, num_threads: int = 1,
                 params: dict | None = None):
        if batch_rows < 1:
            raise Invalid("batch_rows must be positive")
        self.ref, self.threshold = ref, float(threshold)
        self.input_features = list(input_features)
        self.params = dict(params or {})
        self.decay_days = _positive(self.params.get("decay_days"))
        # "next-gap": the output is a distribution of the time to the next read (see tasks/train/trace.py)
        self.kind = str(self.params.get("policy") or "reuse")
        self.gap_edges = np.asarray(self.params.get("gap_edges") or [], np.float64)
        admit = self.params.get("admit_threshold")
        self.admit_threshold = float(admit) if isinstance(admit, (int, float)) and not isinstance(admit, bool) else None
        self.batch_rows = 1 << (batch_rows - 1).bit_length()   # a power of two
        try:
            self._it = interpreter_class()(model_content=bytes(tflite), num_threads=num_threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise Invalid(f"model {ref}: not a usable TFLite model: {e}") from e
        inp, out = self._it.get_input_details(), self._it.get_output_details()
        if len(inp) != 1 or len(out) != 1 or len(inp[0]["shape"]) != 2:
            raise Invalid(f"model {ref}: expected one [batch, n] input and one output")
        self._in, self._out = inp[0]["index"], out[0]["index"]
        self.n_features = int(inp[0]["shape"][1])
        if self.input_features and len(self.input_features) != self.n_features:
            raise Invalid(f"model {ref}: {len(self.input_features)} input features recorded, "
                          f"graph takes {self.n_features}")
        self._batch = int(inp[0]["shape"][0])

    def _run(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] != self._batch:
            self._it.resize_tensor_input(self._in, list(x.shape), strict=False)
            self._it.allocate_tensors()
            self._batch = x.shape[0]
        self._it.set_tensor(self._in, x)
        self._it.invoke()
        return self._it.get_tensor(self._out)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of the rows of ``x`` (``[n, n_features]``), as float32 ``[n]`` (the last output column)."""
        return self.predict_all(x)[:, -1]

    def predict_all(self, x: np.ndarray) -> np.ndarray:
        """Every output column for the rows of ``x``: float32 ``[n, k]``."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise Invalid(f"model {self.ref} takes rows of {self.n_features} features, got shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0]
        out = None
        full = n - n % self.batch_rows
        for i in range(0, full, self.batch_rows):
            y = self._run(x[i:i + self.batch_rows])
            out = np.empty((n, y.shape[1]), np.float32) if out is None else out
            out[i:i + self.batch_rows] = y
        if full < n:
            rest = x[full:]
            size = 1 << (len(rest) - 1).bit_length()   # pad the tail to a power of two: few sizes, few reallocs
            if size != len(rest):
                rest = np.concatenate([rest, np.zeros((size - len(rest), self.n_features), np.float32)])
            y = self._run(rest)
            out = np.empty((n, y.shape[1]), np.float32) if out is None else out
            out[full:] = y[: n - full]
        return out if out is not None else np.zeros((0, 1), np.float32)

    def score_trace(self, table) -> np.ndarray:
        """Scores of every request of a trace table, from past-only features built over it.

        A next-gap model takes a table or a :class:`~smartcache.tasks.common.trace.Trace` and gives its class
        probabilities, ``[n, len(gap_edges) + 1]``.
        """
        if self.kind == "next-gap":
            from smartcache.tasks.common.trace import trace_from_table
            from smartcache.tasks.features.online import trace_features
            if len(table) == 0:
                return np.zeros((0, len(self.gap_edges) + 1), np.float32)
            trace = trace_from_table(table, "requests") if hasattr(table, "column_names") else table
            return self.predict_all(trace_features(trace))
        from smartcache.tasks.features.task import trace_feature_matrix
        try:
            x = trace_feature_matrix(table, self.input_features)
        except ValueError as e:  # a model input that a plain trace cannot give
            raise SmartcacheError(f"model {self.ref} cannot score a plain trace: {e}") from e
        return self.predict(x)

    def __call__(self, x) -> np.ndarray:
        if hasattr(x, "column_names") or hasattr(x, "lfns"):  # a pyarrow Table or a Trace: requests
            return self.score_trace(x)
        return self.predict(x)


def _positive(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def parse_ref(name: str, version: int | None = None) -> tuple[str, int | None]:
    """``"cachenet:3"`` -> ("cachenet", 3); an explicit ``version`` wins."""
    base, sep, ver = name.partition(":")
    if sep:
        try:
            parsed = int(ver)
        except ValueError as e:
            raise Invalid(f"invalid model reference {name!r}: use NAME or NAME:VERSION") from e
        return base, version if version is not None else parsed
    return name, version


def load_scorer(store, name: str, version: int | None = None, *, batch_rows: int = DEFAULT_BATCH,
                num_threads: int = 1) -> Scorer:
    """The scorer of catalog model ``name`` (production if any, else newest; or ``NAME:VERSION``)."""
    base, ver = parse_ref(name, version)
    model = store.get_model(base, ver)
    tflite = store.model_artifact(model.name, model.version, "tflite")
    threshold = model.metrics.get("threshold", model.params.get("threshold", 0.5))
    return Scorer(tflite, model.input_features, ref=model.ref, threshold=float(threshold),
                  batch_rows=batch_rows, num_threads=num_threads, params=model.params)
