"""DAG task: train the cache model on the feature table and register it in the catalog.

    python -m smartcache.tasks.train --catalog-url URL --run-id N --features DATASET --name cachenet \
        [--horizon DAYS] [--seed N] [--epochs N] [--max-train-rows N] [--val-fraction F]

A Keras MLP (:mod:`smartcache.tasks.train_model`) over the feature table's ``FEATURE_COLUMNS``,
trained on earlier days and validated on later ones (:mod:`smartcache.tasks.train_data`), with
balanced class weights, early stopping on validation AUC and a fixed seed (same seed, same data ->
the same model). Exported as a SavedModel tarball (TFaaS) and a TFLite flatbuffer with the
normalisation inside, checked to agree on validation rows, and registered as a new ``staging``
version with its metrics and lineage. Promotion to ``production`` is the evaluation's job
(:func:`smartcache.tasks.train_gate.promote_if_better`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from smartcache.catalog import Model, Store, open_store
from smartcache.catalog.errors import Invalid, SmartcacheError
from smartcache.tasks import train_data as D
from smartcache.tasks.train_model import FitConfig, export, fit, keras_predict

log = logging.getLogger("smartcache.train")

DEFAULT_NAME = "cachenet"
DEFAULT_HORIZON = 7
DEFAULT_MAX_TRAIN_ROWS = 1_000_000   # a uniform sample beyond this: ~15 s per epoch on 2 cores
AGREE_ROWS = 20_000            # validation rows on which TFLite must reproduce Keras
AGREE_TOL = 1e-4


@dataclass(frozen=True)
class TrainResult:
    model: Model
    metrics: dict


def feature_columns() -> list[str]:
    try:
        from smartcache.tasks.features import FEATURE_COLUMNS
    except ImportError:  # the feature step's core, before its task module
        from smartcache.tasks.feat_core import FEATURE_COLUMNS
    return list(FEATURE_COLUMNS)


def _dataset_horizon(meta: dict, horizon: int | None) -> int:
    value = horizon if horizon is not None else meta.get("horizon_days", meta.get("horizon", DEFAULT_HORIZON))
    try:
        value = int(value)
    except (TypeError, ValueError) as e:
        raise Invalid(f"label horizon must be a whole number of days, not {value!r}") from e
    if value < 1:
        raise Invalid("label horizon must be at least one day")
    return value


def _last_day(meta: dict) -> int | None:
    """The last day the feature table's source data covers, when its catalog row says so."""
    value = meta.get("last_day") or meta.get("end")
    if not value:
        return None
    from datetime import date
    try:
        return (date.fromisoformat(str(value)[:10]) - D.EPOCH).days
    except ValueError:
        return None


def train(store: Store, features: str, name: str = DEFAULT_NAME, *, horizon: int | None = None,
          cfg: FitConfig = FitConfig(), val_fraction: float = 0.2,
          max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS, run_id: int | None = None,
          columns: Sequence[str] | None = None, workdir: Path | None = None) -> TrainResult:
    """Train on catalog dataset ``features``, register ``name`` (a new staging version), return it."""
    t_start = time.perf_counter()
    ds = store.get_dataset(features)
    horizon = _dataset_horizon(ds.meta, horizon)
    cols = list(columns) if columns is not None else feature_columns()
    rows = D.load_labelled(ds.uri, cols, horizon, _last_day(ds.meta))
    split = D.time_split(rows.day, horizon, val_fraction)
    tr = D.subsample(split.train, max_train_rows, cfg.seed)
    x_tr, y_tr, x_va, y_va = rows.x[tr], rows.y[tr], rows.x[split.val], rows.y[split.val]
    if y_tr.min() == y_tr.max():
        raise Invalid(f"training rows of {features} have a single class: nothing to learn")
    log.info("training on %d rows (%s), validating on %d rows (%s)", len(tr), split.train_days,
             len(split.val), split.val_days)
    result = fit(x_tr, y_tr, x_va, y_va, cfg)

    from smartcache.tasks.scoring import Scorer
    with tempfile.TemporaryDirectory(prefix="smartcache-train-") as tmp:
        artifacts = export(result.model, name, Path(workdir or tmp),
                           description=f"p(read again at the site within {horizon} days) from {features}",
                           params={})
    scorer = Scorer(artifacts["tflite"], cols, ref=name)
    s_va = scorer.predict(x_va)
    sample = slice(0, min(AGREE_ROWS, len(x_va)))
    diff = float(np.max(np.abs(keras_predict(result.model, x_va[sample]) - s_va[sample]))) if len(x_va) else 0.0
    if not diff <= AGREE_TOL:
        raise SmartcacheError(f"TFLite export disagrees with the Keras model by {diff:.2e} (> {AGREE_TOL})")

    op = D.operating_point(y_va, s_va)
    metrics = {"auc": D.roc_auc(y_va, s_va), **op, "n_train": int(len(tr)), "n_val": int(len(split.val)),
               "n_train_available": int(len(split.train)), "n_dropped": rows.n_dropped,
               "positive_rate": float(y_tr.mean()), "positive_rate_val": float(y_va.mean()),
               "epochs": result.epochs_run, "best_epoch": result.best_epoch,
               "fit_seconds": round(result.seconds, 2), "seconds": round(time.perf_counter() - t_start, 2),
               "tflite_max_abs_diff": diff, **split.describe()}
    from smartcache.inference.modelformat import record_params
    params = record_params(threshold=op["threshold"], feature_defaults=_feature_defaults(cols),
                           horizon_days=horizon, seed=cfg.seed, hidden=list(cfg.hidden), epochs_max=cfg.epochs,
                           batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, val_fraction=val_fraction,
                           max_train_rows=max_train_rows, class_weighted=True,
                           preprocessing="sign(x)*log1p(|x|) then Normalization (in the graph)")
    model = store.register_model(name, "tensorflow", artifacts, input_features=cols, metrics=metrics,
                                 params=params, datasets=[("train", features)], run_id=run_id,
                                 description=f"Keras MLP {list(cfg.hidden)} on {features}", stage="staging",
                                 stage_reason="trained; awaiting the simulation gate")
    return TrainResult(model, metrics)


def _feature_defaults(cols: Sequence[str]) -> dict[str, float] | None:
    """Values of a file with no history, when the features module says what they are."""
    try:
        from smartcache.tasks import features
    except ImportError:
        return None
    defaults = getattr(features, "FEATURE_DEFAULTS", None)
    if not defaults:
        return None
    return {c: float(defaults[c]) for c in cols if c in defaults}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.train", description=__doc__.split("\n")[0])
    ap.add_argument("--catalog-url", required=True)
    ap.add_argument("--run-id", type=int)
    ap.add_argument("--features", required=True, help="catalog name of the feature table dataset")
    ap.add_argument("--name", default=DEFAULT_NAME, help="model name (a new version is registered)")
    ap.add_argument("--horizon", type=int, help="label horizon in days (default: the feature table's)")
    ap.add_argument("--seed", type=int, default=FitConfig.seed)
    ap.add_argument("--epochs", type=int, default=FitConfig.epochs, help="maximum epochs (early stopping)")
    ap.add_argument("--patience", type=int, default=FitConfig.patience)
    ap.add_argument("--batch-size", type=int, default=FitConfig.batch_size)
    ap.add_argument("--max-train-rows", type=int, default=DEFAULT_MAX_TRAIN_ROWS, help="0 = all")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = FitConfig(seed=args.seed, epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                    verbose=2 if args.verbose else 0)
    try:
        store = open_store(args.catalog_url)
        try:
            res = train(store, args.features, args.name, horizon=args.horizon, cfg=cfg,
                        val_fraction=args.val_fraction, max_train_rows=args.max_train_rows or None,
                        run_id=args.run_id)
        finally:
            store.close()
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"model": res.model.ref, "stage": res.model.stage, **res.metrics}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
