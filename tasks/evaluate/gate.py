"""The promotion gate: a model reaches ``production`` only if simulation says it beats LRU *and* the best
other heuristic that was evaluated (ARC, S3-FIFO, GDSF, LFU, SIEVE: what an operator could switch on).

``promote_if_better(store, model_ref, evaluation_result)`` reads the evaluate task's results and sets
the model's stage: ``production`` when its byte hit ratio on the held-out days, at the sites' own
cache sizes, is above LRU's and above every other heuristic's; otherwise ``staging``, with the reason
(naming the heuristic that won and by how much) recorded on the model either way.

``evaluation_result`` may be what :mod:`smartcache.tasks.evaluate.task` produces -- an ``Evaluation``, its
``SimResult`` rows, or its ``metrics.json`` (a dict with ``results``: rows with ``site, policy,
cache_size, size_label, bytes_requested, bytes_hit, ...``) -- or a plain ``{site: {policy:
byte_hit_ratio}}`` mapping. Rows are judged by :func:`smartcache.tasks.evaluate.task.promotion_verdict`
(byte-weighted over the sites, at the ``site`` size label when the catalog gave sizes); the plain mapping
(no byte counts) requires the model to beat LRU and the best other heuristic at every site.

    python -m smartcache.tasks.evaluate.gate --catalog-url URL --model NAME[:VERSION] --evaluation metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping

from smartcache.catalog import Model, Store, open_store
from smartcache.catalog.errors import Invalid, SmartcacheError
from smartcache.tasks.score.scorer import parse_ref
from smartcache.tasks.simulate.grid import best_of

BASELINE = "lru"


def _model(store: Store, model_ref: Any) -> Model:
    if isinstance(model_ref, Model):
        return model_ref
    if isinstance(model_ref, tuple):
        return store.get_model(model_ref[0], model_ref[1])
    name, version = parse_ref(str(model_ref))
    return store.get_model(name, version)


def _sim_rows(evaluation: Any) -> list | None:
    """SimResult rows from any of the evaluate task's forms; None for the plain mapping form."""
    from smartcache.tasks.simulate.core import Metrics, SimResult
    if hasattr(evaluation, "results") and not isinstance(evaluation, Mapping):
        evaluation = evaluation.results
    if isinstance(evaluation, Mapping):
        if "results" not in evaluation:
            return None
        evaluation = evaluation["results"]
    rows = []
    for r in evaluation:
        if isinstance(r, SimResult):
            rows.append(r)
            continue
        try:
            m = Metrics(int(r.get("requests", 0)), int(r.get("hits", 0)), int(r["bytes_requested"]),
                        int(r["bytes_hit"]), int(r.get("bytes_written", 0)))
            extra = {"size_label": r["size_label"]} if r.get("size_label") else {}
            rows.append(SimResult(str(r["site"]), str(r["policy"]), int(r.get("cache_size", 0)), m, (), 0.0, extra))
        except (KeyError, TypeError, ValueError) as e:
            raise Invalid(f"evaluation row is not a simulation result: {e}") from e
    return rows


def _model_policy(policies: set[str], model: Model) -> str | None:
    """Which policy name in the results is this model: ``model:NAME:V``, ``model:NAME`` or ``model``."""
    for candidate in (f"model:{model.ref}", f"model:{model.name}", "model"):
        if candidate in policies:
            return candidate
    mine = [p for p in policies if p.startswith("model")]
    return mine[0] if len(mine) == 1 else None


def verdict(model: Model, evaluation: Any) -> tuple[bool, str]:
    """(promote?, reason) for ``model`` given the evaluation; touches no catalog."""
    rows = _sim_rows(evaluation)
    if rows is None:
        return _mapping_verdict(model, evaluation)
    from smartcache.tasks.evaluate.task import promotion_verdict
    policy = _model_policy({r.policy for r in rows}, model)
    if policy is None:
        return False, f"the evaluation has no results for model {model.ref}"
    return promotion_verdict(rows, policy, BASELINE)


def _mapping_verdict(model: Model, per_site: Mapping) -> tuple[bool, str]:
    losses, wins = [], []
    for site, by_policy in per_site.items():
        if not isinstance(by_policy, Mapping):
            raise Invalid("evaluation must map site -> {policy: byte hit ratio}")
        policy = _model_policy(set(by_policy), model)
        if policy is None or BASELINE not in by_policy:
            losses.append(f"{site}: no model/LRU result")
            continue
        m, b = float(by_policy[policy]), float(by_policy[BASELINE])
        best = best_of({p: float(v) for p, v in by_policy.items()}, exclude=BASELINE)
        rival = (BASELINE, b) if m <= b else best if best is not None and m <= best[1] else None
        if rival is not None:
            losses.append(f"{site}: {m:.4f} vs {rival[0].upper()} {rival[1]:.4f} (short by {rival[1] - m:.4f})")
        else:
            also = f", best other heuristic {best[0].upper()} {best[1]:.4f}" if best else ""
            wins.append(f"{site}: {m:.4f} vs LRU {b:.4f}{also}")
    if not wins and not losses:
        return False, "empty evaluation"
    if losses:
        return False, ("does not beat LRU and the best other heuristic in byte hit ratio at every site ("
                       + "; ".join(losses) + ")")
    return True, "beats LRU and every other heuristic's byte hit ratio at every site (" + "; ".join(wins) + ")"


def promote_if_better(store: Store, model_ref: Any, evaluation_result: Any) -> tuple[bool, str]:
    """Set the model's stage from the simulation: production if it beats LRU and the best other heuristic,
    else staging (with why)."""
    model = _model(store, model_ref)
    ok, reason = verdict(model, evaluation_result)
    store.set_model_stage(model.name, model.version, "production" if ok else "staging", reason)
    return ok, reason


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.evaluate.gate", description=__doc__.split("\n")[0])
    ap.add_argument("--catalog-url", required=True)
    ap.add_argument("--model", required=True, help="NAME or NAME:VERSION")
    ap.add_argument("--evaluation", type=Path, required=True, help="the evaluate task's metrics.json")
    args = ap.parse_args(argv)
    try:
        data = json.loads(args.evaluation.read_text())
        store = open_store(args.catalog_url)
        try:
            ok, reason = promote_if_better(store, args.model, data)
        finally:
            store.close()
    except (OSError, ValueError) as e:
        print(f"error: cannot read {args.evaluation}: {e}", file=sys.stderr)
        return 1
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.model}: {'production' if ok else 'staging'}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
