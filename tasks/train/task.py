"""DAG task: train the cache model on the feature table and register it in the catalog.

    python -m smartcache.tasks.train --catalog-url URL --run-id N --features DATASET --name cachenet \
        [--horizon DAYS] [--seed N] [--epochs N] [--max-train-rows N] [--val-fraction F]
    python -m smartcache.tasks.train --catalog-url URL --run-id N (--trace CSV | --trace-dataset NAME) \
        [--until YYYY-MM-DD] [--site S] [--warm-start NAME:VERSION] --name cachenet      (trace mode)

Trace mode trains the next-read model on a plain trace's requests before ``--until``
(:func:`smartcache.tasks.train.trace.train_on_trace`), with a warm-started candidate when asked
(:mod:`smartcache.tasks.train.continued`): the retrain workflow's train node.

A Keras MLP (:mod:`smartcache.tasks.train.model`) over the feature table's ``FEATURE_COLUMNS``,
trained on earlier days and validated on later ones (:mod:`smartcache.tasks.train.data`), with a fixed
seed (same seed, same data -> the same model). The validation days are the held-out days of the cache
simulation, so training never looks at them: the number of epochs comes from early stopping on the last
training days, then the model is refit on all training days. Exported
as a SavedModel tarball (TFaaS) and a TFLite flatbuffer with the normalisation inside, checked to agree
on validation rows, and registered as a new ``staging`` version with its metrics, lineage and the
params /decide and the simulator need (``threshold``, ``feature_defaults``, ``tfaas``, ``decay_days``).
Promotion to ``production`` is the evaluation's job (:func:`smartcache.tasks.evaluate.gate.promote_if_better`).

What it learns from: the request-level table the feature step writes beside the daily one (named in
the daily table's ``requests`` metadata): one row per read, features as of that read -- the rows the
cache simulator and an online cache ask about. The output is p = P(read again at the site within the
horizon), left calibrated (no class weights): the cache ranks files by p discounted with the time since
their last read, ``ln p - age / decay_days`` (``decay_days`` = the horizon; see sim_policies), so the
numbers themselves matter, not only their order. A daily table without a request table (older data,
hand-made tables) is trained on as it is, with balanced class weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from smartcache.catalog import Dataset, Model, Store, open_store
from smartcache.catalog.errors import Invalid, NotFound, SmartcacheError
from smartcache.tasks.train import data as D
from smartcache.tasks.train.model import FitConfig, FitResult, export, fit, keras_predict

log = logging.getLogger("smartcache.train")

DEFAULT_NAME = "cachenet"
DEFAULT_HORIZON = 3
DEFAULT_MAX_TRAIN_ROWS = 1_000_000   # a uniform sample beyond this: ~15 s per epoch on 2 cores
AGREE_ROWS = 20_000            # validation rows on which TFLite must reproduce Keras
AGREE_TOL = 1e-4


@dataclass(frozen=True)
class TrainResult:
    model: Model
    metrics: dict


def feature_columns() -> list[str]:
    try:
        from smartcache.tasks.features.task import FEATURE_COLUMNS
    except ImportError:  # the feature step's core, before its task module
        from smartcache.tasks.features.daily import FEATURE_COLUMNS
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


def training_source(store: Store, features: str) -> tuple[Dataset, bool]:
    """(the dataset to train on, request-level?) for catalog dataset ``features``."""
    ds = store.get_dataset(features)
    if ds.meta.get("granularity") == "request":
        return ds, True
    name = ds.meta.get("requests")
    if name:
        try:
            return store.get_dataset(name), True
        except NotFound:
            log.warning("%s names request-level rows %s, which are not in the catalog: training on daily rows",
                        features, name)
    return ds, False


def train(store: Store, features: str, name: str = DEFAULT_NAME, *, horizon: int | None = None,
          cfg: FitConfig = FitConfig(), val_fraction: float = 0.2,
          max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS, run_id: int | None = None,
          columns: Sequence[str] | None = None, workdir: Path | None = None,
          decay_days: float | None = None) -> TrainResult:
    """Train on catalog dataset ``features``, register ``name`` (a new staging version), return it.

    ``decay_days``: the simulator's time discount of a file's score (default: the horizon, for
    request-level training; none for daily rows, whose scores are not per request).
    """
    t_start = time.perf_counter()
    src, per_request = training_source(store, features)
    horizon = _dataset_horizon(src.meta, horizon)
    if cfg.class_weighted is None:
        cfg = replace(cfg, class_weighted=not per_request)
    cols = list(columns) if columns is not None else feature_columns()
    rows = D.load_labelled(src.uri, cols, horizon, _last_day(src.meta))
    split = D.time_split(rows.day, horizon, val_fraction)
    tr = D.subsample(split.train, max_train_rows, cfg.seed)
    x_tr, y_tr, x_va, y_va = rows.x[tr], rows.y[tr], rows.x[split.val], rows.y[split.val]
    if y_tr.min() == y_tr.max():
        raise Invalid(f"training rows of {features} have a single class: nothing to learn")
    log.info("training on %d rows of %s (%s), validating on %d rows (%s)", len(tr), src.name, split.train_days,
             len(split.val), split.val_days)
    result, stopping = _fit_blind_to_validation(rows, split, tr, horizon, val_fraction, cfg)

    what = "of a read" if per_request else "after a day with reads"
    description = f"p(read again at the site within {horizon} days {what}) from {src.name}"
    from smartcache.tasks.score.scorer import Scorer
    with tempfile.TemporaryDirectory(prefix="smartcache-train-") as tmp:
        artifacts = export(result.model, name, Path(workdir or tmp), description=description, params={})
    scorer = Scorer(artifacts["tflite"], cols, ref=name)
    s_va = scorer.predict(x_va)
    sample = slice(0, min(AGREE_ROWS, len(x_va)))
    diff = float(np.max(np.abs(keras_predict(result.model, x_va[sample]) - s_va[sample]))) if len(x_va) else 0.0
    if not diff <= AGREE_TOL:
        raise SmartcacheError(f"TFLite export disagrees with the Keras model by {diff:.2e} (> {AGREE_TOL})")

    op = D.operating_point(y_va, s_va)
    metrics = {"auc": D.roc_auc(y_va, s_va), **op, "log_loss": D.log_loss(y_va, s_va), "n_train": int(len(tr)),
               "n_val": int(len(split.val)), "n_train_available": int(len(split.train)),
               "n_dropped": rows.n_dropped, "positive_rate": float(y_tr.mean()),
               "positive_rate_val": float(y_va.mean()), "epochs": result.epochs_run, "best_epoch": result.best_epoch,
               "fit_seconds": round(result.seconds, 2), "seconds": round(time.perf_counter() - t_start, 2),
               "tflite_max_abs_diff": diff, **split.describe(), "early_stopping": stopping}
    if decay_days is None and per_request:
        decay_days = float(horizon)
    extra = {"horizon_days": horizon, "granularity": "request" if per_request else "day", "train_rows": src.name,
             "seed": cfg.seed, "hidden": list(cfg.hidden), "epochs_max": cfg.epochs, "batch_size": cfg.batch_size,
             "learning_rate": cfg.learning_rate, "val_fraction": val_fraction, "max_train_rows": max_train_rows,
             "class_weighted": bool(cfg.class_weighted),
             "preprocessing": "sign(x)*log1p(|x|) then Normalization (in the graph)"}
    if decay_days is not None:
        # the simulator's model policy: priority ln p - (time since the last read) / decay, and a newcomer
        # is admitted when it is worth more than the file it would push out (no fixed threshold)
        extra.update(decay_days=float(decay_days), admit_threshold=0.0)
    from smartcache.inference.modelformat import register
    model = register(store, name, artifacts, input_features=cols, threshold=op["threshold"],
                     feature_defaults=feature_defaults(cols, x_tr), params=extra, metrics=metrics,
                     datasets=[("train", features)], run_id=run_id,
                     description=f"Keras MLP {list(cfg.hidden)}: {description}", stage="staging",
                     stage_reason="trained; awaiting the simulation gate")
    return TrainResult(model, metrics)


def _fit_blind_to_validation(rows: D.LabelledRows, split: D.Split, tr: np.ndarray, horizon: int,
                             val_fraction: float, cfg: FitConfig):
    """Fit without looking at the validation days: they are the held-out days the cache simulation counts.

    The number of epochs is chosen by early stopping on the last days *of the training period* (split off
    the same way, purged), then the model is refit on all training rows for that many epochs. With too few
    training days for a second split, early stopping falls back to the validation days (and says so).
    Returns the fit and how the epochs were chosen.
    """
    try:
        inner = D.time_split(rows.day[split.train], horizon, val_fraction)
    except Invalid:
        log.warning("too few training days to early-stop on: early stopping on the validation days")
        fit_va = split.val
        return fit(rows.x[tr], rows.y[tr], rows.x[fit_va], rows.y[fit_va], cfg), "validation days"
    pool = split.train[inner.train]
    fit_tr = pool[np.isin(pool, tr)] if len(tr) < len(split.train) else pool   # the same subsample
    stop_rows = split.train[inner.val]
    if rows.y[fit_tr].min() == rows.y[fit_tr].max() or rows.y[stop_rows].min() == rows.y[stop_rows].max():
        return fit(rows.x[tr], rows.y[tr], rows.x[split.val], rows.y[split.val], cfg), "validation days"
    probe = fit(rows.x[fit_tr], rows.y[fit_tr], rows.x[stop_rows], rows.y[stop_rows], cfg)
    final = fit(rows.x[tr], rows.y[tr], None, None, replace(cfg, epochs=probe.best_epoch))
    days = [D.day_iso(d) for d in inner.val_days]
    return (FitResult(final.model, probe.epochs_run, probe.best_epoch, probe.seconds + final.seconds,
                      final.history), f"training days {days[0]}..{days[1]}, then refit on all training days")


def feature_defaults(cols: Sequence[str], x_train: np.ndarray | None = None) -> dict[str, float]:
    """The inputs of a file with no history (``features.FEATURE_DEFAULTS``), ``log_size`` = the training median.

    /decide fills with these the features it cannot derive from a file's name and size.
    """
    try:
        from smartcache.tasks.features.task import FEATURE_DEFAULTS as defaults
    except ImportError:  # pragma: no cover - the feature step is part of the package
        return {}
    out = {c: float(defaults[c]) for c in cols if c in defaults}
    if "log_size" in out and x_train is not None and len(x_train):
        out["log_size"] = float(np.median(x_train[:, list(cols).index("log_size")]))
    return out


def _next_gap(store: Store, args: argparse.Namespace) -> int:
    from smartcache.tasks.train.nextgap import NextGapConfig
    from smartcache.tasks.train.trace import train_on_features
    cfg = NextGapConfig(seed=args.seed, epochs=args.epochs or NextGapConfig.epochs, verbose=2 if args.verbose else 0)
    model = train_on_features(store, args.features, args.name, val_fraction=args.val_fraction, cfg=cfg,
                              run_id=args.run_id)
    print(json.dumps({"model": model.ref, "stage": model.stage, **model.metrics}, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.train", description=__doc__.split("\n")[0])
    ap.add_argument("--catalog-url", required=True)
    ap.add_argument("--run-id", type=int)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", help="catalog name of the feature table dataset")
    src.add_argument("--trace", type=Path, help="trace mode: a trace CSV (timestamp,site,lfn,size)")
    src.add_argument("--trace-dataset", help="trace mode: a catalog trace dataset (e.g. the retrain export's)")
    ap.add_argument("--until", help="trace mode: train on requests before this day (YYYY-MM-DD; default: the "
                                    "dataset's held_out_from, else every request)")
    ap.add_argument("--site", help="trace mode: this site's requests only")
    ap.add_argument("--warm-start", metavar="NAME:VERSION",
                    help="trace mode: also fit from this model's weights; keep the lower validation loss")
    ap.add_argument("--name", default=DEFAULT_NAME, help="model name (a new version is registered)")
    ap.add_argument("--horizon", type=int, help="label horizon in days (default: the feature table's)")
    ap.add_argument("--decay-days", type=float,
                    help="time discount of scores in the cache policy (default: the horizon)")
    ap.add_argument("--seed", type=int, default=FitConfig.seed)
    ap.add_argument("--epochs", type=int, help="maximum epochs (early stopping; default: the kind's own)")
    ap.add_argument("--patience", type=int, default=FitConfig.patience)
    ap.add_argument("--batch-size", type=int, default=FitConfig.batch_size)
    ap.add_argument("--max-train-rows", type=int, help=f"0 = all (default {DEFAULT_MAX_TRAIN_ROWS:,}; "
                                                         "trace mode: the most recent 2,000,000)")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--kind", choices=("next-gap", "reuse"), default="next-gap",
                    help="next-gap: the next-read model on the window's request trace (default); "
                         "reuse: the older p(read again within the horizon) model on the feature table")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = FitConfig(seed=args.seed, epochs=args.epochs or FitConfig.epochs, patience=args.patience, batch_size=args.batch_size,
                    verbose=2 if args.verbose else 0)
    try:
        store = open_store(args.catalog_url)
        try:
            if args.features is None:
                from smartcache.tasks.train.continued import trace_node
                if args.max_train_rows is None:
                    from smartcache.tasks.train.trace import DEFAULT_MAX_ROWS
                    args.max_train_rows = DEFAULT_MAX_ROWS
                return trace_node(store, args)
            if args.kind == "next-gap":
                return _next_gap(store, args)
            rows = DEFAULT_MAX_TRAIN_ROWS if args.max_train_rows is None else args.max_train_rows
            res = train(store, args.features, args.name, horizon=args.horizon, cfg=cfg,
                        val_fraction=args.val_fraction, max_train_rows=rows or None,
                        run_id=args.run_id, decay_days=args.decay_days)
        finally:
            store.close()
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"model": res.model.ref, "stage": res.model.stage, **res.metrics}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
