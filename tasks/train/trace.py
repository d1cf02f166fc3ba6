"""Train the next-read model from a plain request trace, and register it in the catalog.

    smartcache train --trace FILE.csv --name NAME [--site SITE] [--until DATE]

Any operator's trace works (``timestamp,site,lfn,size``; dataset and tier come from the LFN): the inputs are
the :mod:`online features <smartcache.tasks.features.online>` of every request before ``until``, each as of
that request, and the target is the hindsight of :mod:`~smartcache.tasks.simulate.hindsight`: the class of
the time to the next read of the file at the site, censored at ``until`` (nothing at or after ``until`` is
read: those requests are the evaluation window). The pipeline's train node runs the same code on the
approximate trace of the reduced logs. The model is registered as a new ``staging`` version with both
serving forms (SavedModel for TFaaS, TFLite for the simulator, scoring and /decide), its metrics and its
lineage to the trace (a ``trace`` dataset with the file's path and SHA-256).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from smartcache.catalog import Model, Store
from smartcache.catalog.errors import Invalid, SmartcacheError
from smartcache.tasks.common.io import file_sha256
from smartcache.tasks.common.trace import DAY, Trace
from smartcache.tasks.features.online import ONLINE_FEATURES, trace_features
from smartcache.tasks.simulate import hindsight as H
from smartcache.tasks.train import nextgap as NG

log = logging.getLogger("smartcache.train")

POLICY = "next-gap"                 # the model kind the simulator, scoring and /decide dispatch on
FEATURE_SET = "online-v1"
MIN_ROWS = 1000
DEFAULT_MAX_ROWS = 2_000_000        # the most recent requests beyond this (popularity drifts: recent is relevant)
AGREE_ROWS = 20_000
AGREE_TOL = 1e-4


@dataclass(frozen=True)
class TraceSource:
    """Where the training requests came from: a catalog dataset (created for a trace file if needed)."""

    dataset: str
    description: str


def class_labels(edges: np.ndarray = H.GAP_EDGES) -> list[str]:
    def fmt(s: float) -> str:
        return f"{s / DAY:g}d" if s >= DAY else (f"{s / 3600:g}h" if s >= 3600 else f"{s / 60:g}m")
    return [f"<={fmt(e)}" for e in edges] + [f">{fmt(edges[-1])}"]


def register_trace_file(store: Store, path: Path, trace: Trace, run_id: int | None = None) -> TraceSource:
    """A ``trace`` dataset for a trace CSV (named by its content, so the same file is one dataset)."""
    digest = file_sha256(path)
    name = f"trace/{path.stem}-{digest[:12]}"
    store.register_dataset(name, "trace", path.resolve().as_uri(), format="csv", checksum=digest,
                           n_rows=len(trace), n_bytes=path.stat().st_size,
                           meta={"sites": list(trace.site_names()), "first_ts": float(trace.ts[0]),
                                 "last_ts": float(trace.ts[-1])}, run_id=run_id)
    return TraceSource(name, f"{path.name} (sha256 {digest[:12]})")


def parse_until(text: str | None) -> float | None:
    """``YYYY-MM-DD`` (UTC midnight) or an epoch second -> epoch seconds; None stays None."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(str(text)[:10]).replace(tzinfo=timezone.utc)
    except ValueError as e:
        raise Invalid(f"--until must be a date (YYYY-MM-DD) or epoch seconds, not {text!r}") from e
    return d.timestamp()


def training_rows(trace: Trace, until: float, max_rows: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, class masks, timestamps) of the requests before ``until``, in time order."""
    before = trace.take(trace.ts < until)
    if len(before) < MIN_ROWS:
        raise Invalid(f"only {len(before)} requests before {_iso(until)}: at least {MIN_ROWS} are needed to train")
    x = trace_features(before)
    gap = H.next_gap(before)
    mask = H.gap_buckets(gap, until - before.ts)
    keep = slice(max(0, len(before) - max_rows), None) if max_rows else slice(None)
    return x[keep], mask[keep], before.ts[keep]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).date().isoformat()


def train_on_trace(store: Store, trace: Trace, name: str, source: TraceSource, *, until: float | None = None,
                   site: str | None = None, cfg: NG.NextGapConfig = NG.NextGapConfig(),
                   max_rows: int | None = DEFAULT_MAX_ROWS, run_id: int | None = None,
                   workdir: Path | None = None, warm_from: str | None = None) -> Model:
    """Fit the next-read model on ``trace`` (one site's requests if ``site``) before ``until``; register it.

    ``warm_from`` (``NAME:VERSION``, e.g. the production model): also fit a candidate initialised from its
    weights and keep the one with the lower validation loss (:mod:`.continued`)."""
    from smartcache.tasks.train import continued as C
    from smartcache.tasks.train import weights as WT
    t_start = time.perf_counter()
    if site is not None:
        trace = trace.for_site(site)
    if len(trace) == 0:
        raise Invalid("the trace has no requests")
    until = float(trace.ts[-1]) + 1.0 if until is None else until
    x, mask, ts = training_rows(trace, until, max_rows)
    log.info("training %s on %d requests before %s", name, len(x), _iso(until))
    warm = C.warm_source(store, warm_from, ONLINE_FEATURES, FEATURE_SET) if warm_from else None
    fitted, cfg, chosen = C.fit_best(x, mask, cfg, warm)
    cut = int(len(x) * (1.0 - cfg.val_fraction))
    with tempfile.TemporaryDirectory(prefix="smartcache-train-") as tmp:
        artifacts = _export(fitted.model, name, Path(workdir or tmp), source)
    artifacts[WT.ART_WEIGHTS] = WT.to_npz(fitted.model, hidden=cfg.hidden, feature_set=FEATURE_SET,
                                          features=ONLINE_FEATURES)
    diff, probs = _agreement(artifacts["tflite"], fitted.model, x[cut:])
    metrics = {**validation_metrics(probs, mask[cut:], prior(mask[:cut])), "n_train": int(cut), "n_val": int(len(x) - cut),
               "epochs": fitted.epochs_run, "best_epoch": fitted.best_epoch,
               "fit_seconds": round(fitted.seconds, 2), "seconds": round(time.perf_counter() - t_start, 2),
               "tflite_max_abs_diff": diff, "train_from": _iso(float(ts[0])), "until": _iso(until),
               "val_days": [_iso(until)], **chosen}
    params = {"policy": POLICY, "features": FEATURE_SET, "gap_edges": H.GAP_EDGES.tolist(),
              "classes": class_labels(), "until": until, "site": site, "trace": source.dataset,
              "fit": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}}
    from smartcache.inference.modelformat import register
    return register(store, name, artifacts, input_features=ONLINE_FEATURES, params=params, metrics=metrics,
                    datasets=[("train", source.dataset)], run_id=run_id,
                    description=f"next-read model (Keras MLP {list(cfg.hidden)}) from {source.description}",
                    stage="staging", stage_reason="trained; awaiting the simulation gate")


def _export(model, name: str, workdir: Path, source: TraceSource) -> dict[str, bytes]:
    from smartcache.inference.modelformat import export_keras
    return export_keras(model, name, workdir, labels=class_labels(),
                        description=f"time to the next read of a file at the site, from {source.description}",
                        params={})


def _agreement(tflite: bytes, model, x_val: np.ndarray) -> tuple[float, np.ndarray]:
    """The TFLite form must reproduce Keras on validation rows; returns (max |diff|, TFLite probabilities)."""
    from smartcache.tasks.score.scorer import Scorer
    scorer = Scorer(tflite, ONLINE_FEATURES, ref="candidate")
    probs = scorer.predict_all(x_val)
    sample = slice(0, min(AGREE_ROWS, len(x_val)))
    diff = float(np.max(np.abs(NG.predict(model, x_val[sample]) - probs[sample]))) if len(x_val) else 0.0
    if not diff <= AGREE_TOL:
        raise SmartcacheError(f"TFLite export disagrees with the Keras model by {diff:.2e} (> {AGREE_TOL})")
    return diff, probs


def prior(mask: np.ndarray) -> np.ndarray:
    """Class frequencies of training rows (a censored row spread over the classes it allows): the baseline."""
    share = mask / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
    q = share.sum(axis=0) + 1.0
    return q / q.sum()


def _nll(probs: np.ndarray, mask: np.ndarray) -> float:
    return float(-np.mean(np.log(np.sum(probs * mask, axis=1) + 1e-7))) if len(probs) else 0.0


def validation_metrics(probs: np.ndarray, mask: np.ndarray, base: np.ndarray | None = None) -> dict:
    """Held-out censored log-likelihood (and that of the class prior ``base``: a model that learned nothing),
    and AUC of P(next read within 1 h / 1 d / 7 d) where it is known."""
    from smartcache.tasks.train.data import roc_auc
    out = {"val_nll": round(_nll(probs, mask), 5)}
    if base is not None:
        out["val_nll_prior"] = round(_nll(np.broadcast_to(base, mask.shape), mask), 5)
    cdf = np.cumsum(probs[:, :-1], axis=1)
    known = mask.sum(axis=1) == 1
    cls = np.argmax(mask, axis=1)
    for label, seconds in (("1h", 3600.0), ("1d", DAY), ("7d", 7 * DAY)):
        j = int(np.searchsorted(H.GAP_EDGES, seconds))
        if j >= cdf.shape[1]:
            continue
        y = (cls[known] <= j).astype(np.int8)
        if 0 < y.sum() < len(y):
            out[f"auc_{label}"] = round(float(roc_auc(y, cdf[known, j])), 5)
    return out


def held_out_start(trace: Trace, val_fraction: float) -> float:
    """UTC midnight of the first of the last ``val_fraction`` of the trace's days (the held-out days)."""
    days = np.unique(np.floor_divide(trace.ts, DAY).astype(np.int64))
    if len(days) < 2:
        raise Invalid("the trace spans less than two days: nothing to hold out")
    n_val = min(max(1, int(np.ceil(len(days) * val_fraction))), len(days) - 1)
    return float(days[-n_val] * DAY)


def train_on_features(store: Store, features: str, name: str, *, val_fraction: float = 0.2,
                      cfg: NG.NextGapConfig = NG.NextGapConfig(), run_id: int | None = None) -> Model:
    """The pipeline's train node: the approximate trace the feature step wrote, held-out days excluded."""
    import pyarrow.parquet as pq

    from smartcache.tasks.common.trace import trace_from_table
    from smartcache.tasks.features.table import local_path

    meta = store.get_dataset(features).meta
    if not meta.get("trace"):
        raise Invalid(f"{features} has no request trace (built by an older feature step): rebuild the features, "
                      "or train the daily model with --kind reuse")
    ds = store.get_dataset(meta["trace"])
    trace = trace_from_table(pq.read_table(local_path(ds.uri)), source=ds.name)
    until = held_out_start(trace, val_fraction)
    return train_on_trace(store, trace, name, TraceSource(ds.name, f"{ds.name} (approximate trace of the reduced logs)"),
                          until=until, cfg=cfg, run_id=run_id)
