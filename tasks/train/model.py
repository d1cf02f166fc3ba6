"""The Keras network of ``tasks/train``: building it, fitting it reproducibly, exporting it.

The graph takes the raw feature vector (``input_features`` order, float32) and does everything
itself, so that the SavedModel and the TFLite form are self-contained and every consumer (bulk
scoring, the simulator, the inference service) feeds the same raw numbers:

    x -> sign(x)·ln(1+|x|)  (counts and ages are heavy-tailed)
      -> Normalization(mean, variance of the training rows, after the log)
      -> Dense(64, relu) -> Dense(32, relu) -> Dense(1, sigmoid)   = p(read again within the horizon)

TensorFlow is imported lazily (it takes seconds): nothing here runs at import time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class FitConfig:
    seed: int = 1
    epochs: int = 30                 # upper bound; early stopping usually ends sooner
    patience: int = 2
    # Measured on 6 generated months: validation AUC peaks within 1-3 epochs and then drifts down while
    # training AUC keeps rising (consecutive days of one file are near-duplicates, easy to memorise), so
    # a gentle rate, large batches and early stopping with the best weights restored.
    batch_size: int = 4096
    learning_rate: float = 5e-4
    hidden: tuple[int, ...] = (64, 32)
    verbose: int = 0
    # Balanced class weights trade calibration for recall on the rare class. None: the trainer decides
    # (off for request-level rows, whose probabilities the cache policy uses as they are).
    class_weighted: bool | None = None


@dataclass
class FitResult:
    model: Any
    epochs_run: int
    best_epoch: int
    seconds: float
    history: dict = field(default_factory=dict)


def tensorflow(seed: int | None = None):
    """Import TensorFlow with deterministic settings; seed every generator when ``seed`` is given."""
    # Both must be set before TensorFlow's first import to take effect.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN's fused kernels vary run to run
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf
    if seed is not None:
        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()
    return tf, keras


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """The numpy twin of the graph's first step (used to fit the normalisation)."""
    return np.sign(x) * np.log1p(np.abs(x))


def norm_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the log-transformed training rows; constant features get variance 1."""
    z = signed_log1p(x_train.astype(np.float64))
    mean, var = z.mean(axis=0), z.var(axis=0)
    var = np.where(var < 1e-12, 1.0, var)  # Keras would divide by ~1e-7 and blow up unseen values
    return mean.astype(np.float32), var.astype(np.float32)


def build_model(n_features: int, mean: np.ndarray, variance: np.ndarray, cfg: FitConfig,
                feature_names: Sequence[str] = ()):
    tf, keras = tensorflow()

    class SignedLog1p(keras.layers.Layer):
        def call(self, x):
            return tf.sign(x) * tf.math.log1p(tf.abs(x))

    inp = keras.Input(shape=(n_features,), dtype="float32", name="features")
    x = SignedLog1p(name="signed_log1p")(inp)
    # The normalisation is a layer adapted to the training rows (mean/variance given directly:
    # the same statistics adapt() would compute, without a pass over a tf.data pipeline).
    x = keras.layers.Normalization(mean=mean, variance=variance, name="normalization")(x)
    for i, width in enumerate(cfg.hidden):
        x = keras.layers.Dense(width, activation="relu", name=f"dense_{i}")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="score")(x)
    model = keras.Model(inp, out, name="cachenet")
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    return model


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Balanced weights n / (2·n_class): each class contributes half of the loss."""
    n, pos = len(y), int(y.sum())
    neg = n - pos
    if pos == 0 or neg == 0:
        return {0: 1.0, 1: 1.0}
    return {0: n / (2.0 * neg), 1: n / (2.0 * pos)}


def fit(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None, y_val: np.ndarray | None,
        cfg: FitConfig) -> FitResult:
    """Train (balanced class weights unless ``cfg.class_weighted`` is False) with early stopping on
    validation AUC (best weights kept); without validation rows, exactly ``cfg.epochs`` epochs."""
    tf, keras = tensorflow(cfg.seed)
    t0 = time.perf_counter()
    mean, var = norm_stats(x_train)
    model = build_model(x_train.shape[1], mean, var, cfg)
    weights = class_weights(y_train) if cfg.class_weighted is not False else None
    if x_val is None:
        hist = model.fit(x_train, y_train.astype(np.float32), epochs=cfg.epochs, batch_size=cfg.batch_size,
                         class_weight=weights, shuffle=True, verbose=cfg.verbose)
        return FitResult(model, cfg.epochs, cfg.epochs, time.perf_counter() - t0,
                         {k: [float(v) for v in vals] for k, vals in hist.history.items()})
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=cfg.patience,
                                         restore_best_weights=True)
    hist = model.fit(x_train, y_train.astype(np.float32), validation_data=(x_val, y_val.astype(np.float32)),
                     epochs=cfg.epochs, batch_size=cfg.batch_size, class_weight=weights,
                     shuffle=True, callbacks=[stop], verbose=cfg.verbose)
    aucs = hist.history.get("val_auc", [0.0])
    return FitResult(model, len(aucs), int(np.argmax(aucs)) + 1, time.perf_counter() - t0,
                     {k: [float(v) for v in vals] for k, vals in hist.history.items()})


def keras_predict(model, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0)).reshape(-1)


def export(model, name: str, workdir: Path, *, description: str, params: dict) -> dict[str, bytes]:
    """SavedModel tarball + TFLite + params.json, via the inference service's model contract."""
    from smartcache.inference.modelformat import export_keras
    tensorflow()
    return export_keras(model, name, workdir, description=description, labels=["reuse"], params=params)
