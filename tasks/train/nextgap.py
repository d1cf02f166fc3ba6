"""The next-read model: a Keras network that predicts when a file will be read again at the site.

Input: the :data:`~smartcache.tasks.features.online.ONLINE_FEATURES` of a request (already log-scaled).
Output: probabilities of the classes of the time to the next read of the same file at the same site
(:data:`~smartcache.tasks.common.nextgap.GAP_EDGES`: ``<=10 min``, ``<=1 h`` ... ``<=32 d``, later or
never). The graph::

    x -> Normalization(mean, variance of the training rows) -> Dense(64, relu) -> Dropout
      -> Dense(32, relu) -> Dropout -> Dense(C, softmax)

Trained by maximum likelihood with right-censoring: a request whose next read lies beyond the end of
the training window only tells that the gap is longer than what was left; its loss is ``-log`` of the
probability of every class still possible (:func:`~smartcache.tasks.simulate.hindsight.gap_buckets`).
Measured on generated CMS logs (ANCHORS-style traces too): consecutive requests of one campaign are
near-duplicates, so wider or deeper networks memorise them (training loss falls while held-out loss
rises from the first epoch); this small, dropout-regularised network keeps improving on held-out days.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smartcache.tasks.train.model import tensorflow


@dataclass(frozen=True)
class NextGapConfig:
    seed: int = 1
    epochs: int = 12                 # upper bound; early stopping on the last training days ends sooner
    patience: int = 2
    batch_size: int = 8192
    learning_rate: float = 1e-3
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.2
    val_fraction: float = 0.15       # the last part of the training window (by time) for early stopping
    verbose: int = 0


@dataclass
class NextGapFit:
    model: Any
    epochs_run: int
    best_epoch: int
    seconds: float
    history: dict = field(default_factory=dict)


def censored_nll(tf):
    """``-log sum(mask * q)``: the likelihood of the classes a (possibly censored) gap may be in."""
    def loss(mask, q):
        return -tf.math.log(tf.reduce_sum(mask * q, axis=1) + 1e-7)
    return loss


def build(n_features: int, n_classes: int, mean: np.ndarray, variance: np.ndarray, cfg: NextGapConfig):
    tf, keras = tensorflow()
    inp = keras.Input(shape=(n_features,), dtype="float32", name="features")
    x = keras.layers.Normalization(mean=mean, variance=variance, name="normalization")(inp)
    for i, width in enumerate(cfg.hidden):
        x = keras.layers.Dense(width, activation="relu", name=f"dense_{i}")(x)
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, seed=cfg.seed + i, name=f"dropout_{i}")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="next_gap")(x)
    model = keras.Model(inp, out, name="nextgap")
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=censored_nll(tf))
    return model


def norm_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, var = x.mean(axis=0, dtype=np.float64), x.var(axis=0, dtype=np.float64)
    var = np.where(var < 1e-12, 1.0, var)       # a constant feature must not blow up unseen values
    return mean.astype(np.float32), var.astype(np.float32)


def fit(x: np.ndarray, mask: np.ndarray, cfg: NextGapConfig = NextGapConfig(), init: Any = None) -> NextGapFit:
    """Fit on rows in time order: the last ``val_fraction`` early-stops (best weights kept).

    ``init`` (a :class:`~smartcache.tasks.train.weights.Weights`): start from those weights and that
    normalisation (continued training) instead of fresh ones; ``cfg.hidden`` must be theirs."""
    tf, keras = tensorflow(cfg.seed)
    t0 = time.perf_counter()
    cut = int(len(x) * (1.0 - cfg.val_fraction))
    mean, var = norm_stats(x[:cut]) if init is None else (init.mean, init.variance)
    model = build(x.shape[1], mask.shape[1], mean, var, cfg)
    if init is not None:
        model.set_weights(list(init.weights))    # ValueError on another architecture: checked by the caller
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    hist = model.fit(x[:cut], mask[:cut], validation_data=(x[cut:], mask[cut:]), epochs=cfg.epochs,
                     batch_size=cfg.batch_size, shuffle=True, callbacks=[stop], verbose=cfg.verbose)
    losses = hist.history.get("val_loss", [0.0])
    return NextGapFit(model, len(losses), int(np.argmin(losses)) + 1, time.perf_counter() - t0,
                      {k: [float(v) for v in vals] for k, vals in hist.history.items()})


def predict(model, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float32)
