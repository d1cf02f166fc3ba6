"""Continued training: fit on new requests from scratch *and* from the production model, keep the better.

The retrain workflow's train node (``python -m smartcache.tasks.train --trace-dataset NAME --until D
--warm-start NAME:V``) fits two candidates on the same rows, the requests of the feedback window before its
held-out days: a fresh network, and one initialised from the production version's weights and
normalisation (its ``weights`` artifact, :mod:`.weights`) when that version is a next-read model of the
same feature set. Each early-stops on the last part of the training rows (``val_fraction`` of them, by
time); the candidate with the lower validation loss there is registered, and the metrics say which
(``warm_start``) with both losses. The held-out days stay unseen by both: they are the evaluation's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from dataclasses import dataclass

import numpy as np

from smartcache.catalog import Store
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.tasks.common.io import local_path
from smartcache.tasks.train import nextgap as NG
from smartcache.tasks.train import weights as WT

log = logging.getLogger("smartcache.train")


@dataclass(frozen=True)
class WarmStart:
    ref: str                       # NAME:VERSION it comes from
    weights: WT.Weights | None     # None: it cannot be warm-started from (see reason)
    reason: str = ""


def warm_source(store: Store, ref: str, features: list[str], feature_set: str) -> WarmStart:
    """The weights of catalog model ``ref`` if a warm start from it is possible, else why not."""
    name, _, version = ref.partition(":")
    try:
        model = store.get_model(name, int(version) if version else None)
    except (NotFound, ValueError):
        return WarmStart(ref, None, f"no model {ref} in the catalog")
    ref = model.ref
    if model.params.get("policy") != "next-gap" or model.params.get("features") != feature_set:
        return WarmStart(ref, None, f"{ref} is not a next-read model of feature set {feature_set}")
    if list(model.input_features) != list(features):
        return WarmStart(ref, None, f"{ref} takes other input features")
    if WT.ART_WEIGHTS not in {a.kind for a in model.artifacts}:
        return WarmStart(ref, None, f"{ref} has no weights artifact (trained before weights were kept)")
    try:
        weights = WT.from_npz(store.model_artifact(model.name, model.version, WT.ART_WEIGHTS), ref)
    except Invalid as e:
        return WarmStart(ref, None, str(e))
    return WarmStart(ref, weights)


def _best_val(fitted: NG.NextGapFit) -> float:
    losses = fitted.history.get("val_loss") or [float("inf")]
    return float(np.min(losses))


def fit_best(x: np.ndarray, mask: np.ndarray, cfg: NG.NextGapConfig, warm: WarmStart | None
             ) -> tuple[NG.NextGapFit, NG.NextGapConfig, dict]:
    """(the chosen fit, its config, what the metrics record about the choice)."""
    fresh = NG.fit(x, mask, cfg)
    if warm is None:
        return fresh, cfg, {}
    info = {"from": warm.ref, "val_loss_fresh": round(_best_val(fresh), 6)}
    if warm.weights is None:
        log.info("no warm start: %s", warm.reason)
        return fresh, cfg, {"warm_start": {**info, "chosen": "fresh", "reason": warm.reason}}
    warm_cfg = dataclasses.replace(cfg, hidden=warm.weights.hidden)
    try:
        warmed = NG.fit(x, mask, warm_cfg, init=warm.weights)
    except ValueError as e:        # set_weights: another architecture than its header says
        reason = f"the weights of {warm.ref} do not fit the network: {e}"
        return fresh, cfg, {"warm_start": {**info, "chosen": "fresh", "reason": reason}}
    info["val_loss_warm"] = round(_best_val(warmed), 6)
    if _best_val(warmed) < _best_val(fresh):
        log.info("warm start from %s: validation loss %.5f < %.5f fresh", warm.ref, _best_val(warmed), _best_val(fresh))
        return warmed, warm_cfg, {"warm_start": {**info, "chosen": "warm"}}
    return fresh, cfg, {"warm_start": {**info, "chosen": "fresh"}}


# -- the train node's trace mode ----------------------------------------------------------------
def trace_node(store: Store, args: argparse.Namespace) -> int:
    """``--trace CSV`` or ``--trace-dataset NAME`` [``--until D``] [``--warm-start NAME:V``]."""
    from smartcache.tasks.common.trace import read_trace_csv, trace_from_table
    from smartcache.tasks.train.trace import TraceSource, parse_until, register_trace_file, train_on_trace

    if args.trace is not None:
        trace = read_trace_csv(args.trace)
        source = register_trace_file(store, args.trace, trace, run_id=args.run_id)
        until = parse_until(args.until)
    else:
        ds = store.get_dataset(args.trace_dataset)
        path = local_path(ds.uri, "trace")
        if ds.format == "parquet" or path.suffix == ".parquet":
            import pyarrow.parquet as pq
            trace = trace_from_table(pq.read_table(path), source=ds.name)
        else:
            trace = read_trace_csv(path)
        source = TraceSource(ds.name, f"{ds.name} ({len(trace):,} requests)")
        until = parse_until(args.until or ds.meta.get("held_out_from"))
    if args.site is not None and args.site not in trace.sites:
        raise Invalid(f"site {args.site!r} is not in the trace (sites: {', '.join(trace.site_names())})")
    cfg = NG.NextGapConfig(seed=args.seed, epochs=args.epochs or NG.NextGapConfig.epochs,
                           verbose=2 if args.verbose else 0)
    model = train_on_trace(store, trace, args.name, source, until=until, site=args.site, cfg=cfg,
                           max_rows=args.max_train_rows or None, run_id=args.run_id, warm_from=args.warm_start)
    print(json.dumps({"model": model.ref, "stage": model.stage, "trace": source.dataset, **model.metrics},
                     sort_keys=True))
    return 0
