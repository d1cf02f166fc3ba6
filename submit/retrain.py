"""The retrain workflow: the service's feedback -> a new model version -> promoted only if it is better.

``smartcache submit retrain --site S | --all [--days 28] [--model cachenet]`` plans one chain of three nodes::

    export    python -m smartcache.tasks.feedback --catalog-url URL --run-id N --site S --days D --end LAST
                  --holdout F --out DATA/retrain/run-N --name trace/feedback/S/FIRST_LAST
    train     python -m smartcache.tasks.train --catalog-url URL --run-id N --trace-dataset trace/feedback/S/...
                  --until HELD --name MODEL [--site S] [--warm-start MODEL:PROD] [--epochs E]
    evaluate  python -m smartcache.tasks.evaluate --catalog-url URL --run-id N --trace DATA/retrain/run-N/trace.csv
                  --start HELD --out DATA/evaluation/run-N --model MODEL [--baseline-model MODEL:PROD]
                  [--sites S] --parent trace/feedback/S/...

The window is the last ``days`` days of the site's feedback datasets in the catalog, up to the newest (or
``end``); its last days (``holdout``, at least one) are held out: train stops before HELD, evaluate replays
the whole window (warm caches) and counts from HELD, the definition of ``simulate --from``. The new version
is fitted fresh and from the production version's weights (the better validation loss wins), and goes to
production only if it beats the production version and the best heuristic at the sites' cache sizes.

Which model: the service answers a site with its production next-read model *for that site* (a model trained
with ``--site``, its ``params.site``), else with the newest production one trained for every site
(:meth:`smartcache.inference.service.Service.next_gap_model`). ``--site S`` therefore trains
``cachenet-S`` (``--model`` to name it otherwise) and measures it against what the service answers S with
now -- S's own model, else the shared one -- and warm-starts from that; promoted, it serves S alone.
``--all`` is one chain over every site's feedback (one multi-site trace) that trains the shared model
(``cachenet``, for the sites without their own), not one chain per site: it is the model of every site
without one, so it is trained on all of them and judged on all of them, byte-weighted; and a site whose
own feedback is too thin for a model of its own still contributes to it. Per-site models are
``--site S`` runs (one schedule each).

Everything a node will look up is checked here, before a run row exists: the site, the feedback in the
window (enough requests before the held-out days), whether there is a production version to warm-start from
and to beat (none is fine: the first version is judged against the heuristics only).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from smartcache.catalog import Model, Store
from smartcache.catalog.config import Config
from smartcache.catalog.errors import Invalid
from smartcache.condor.dag import Layer, Workflow
from smartcache.submit.workflows import DEFAULT_MODEL, Plan

WORKFLOW = "retrain"
RETRIES = {"export": 1, "train": 1, "evaluate": 1}


@dataclass(frozen=True)
class RetrainRequest:
    """What ``submit retrain`` was asked (also what a schedule re-plans every period)."""
    site: str | None = None            # None: every site with feedback (one multi-site chain)
    days: int = 28
    model: str | None = None           # None: cachenet-<site> for a site, cachenet for --all
    holdout: float = 0.2
    end: str | None = None             # YYYY-MM-DD; None: the newest feedback day when planned
    epochs: int | None = None          # the trainer's default when None
    schedule: int | None = None        # the schedule run that fired this one

    @property
    def model_name(self) -> str:
        return self.model or (f"{DEFAULT_MODEL}-{self.site}" if self.site else DEFAULT_MODEL)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RetrainRequest":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def serving_model(store: Store, site: str | None) -> Model | None:
    """The production next-read model the service answers ``site`` with now (None: every site's shared one),
    by the service's rule: the newest one trained for the site, else the newest trained for every site."""
    rows = [(n, v, p.get("site")) for n, v, p in store.production_models() if p.get("policy") == "next-gap"]
    chosen = next(((n, v) for n, v, s in rows if site is not None and s == site), None) \
        or next(((n, v) for n, v, s in rows if s is None), None)
    return store.get_model(*chosen) if chosen else None


def warm_note(model: Model | None) -> str:
    """Whether the train node can warm-start from ``model`` (it decides for sure; this is what the plan says)."""
    if model is None:
        return "no production version: fresh training only"
    if model.params.get("policy") != "next-gap":
        return f"{model.ref} is not a next-read model: fresh training only"
    if "weights" not in {a.kind for a in model.artifacts}:
        return f"{model.ref} kept no weights: fresh training only"
    return f"fresh and warm-started from {model.ref}, the lower validation loss wins"


def plan(cfg: Config, store: Store, req: RetrainRequest) -> Plan:
    """Check what the nodes need and return the retrain :class:`Plan` (see the module doc)."""
    from smartcache.tasks.feedback import choose_window, trace_name

    if req.site is not None:
        store.get_site(req.site)             # NotFound: "no site named ..."
    end = _day(req.end) if req.end else None
    window = choose_window(store, site=req.site, days=req.days, end=end, holdout=req.holdout)
    production = serving_model(store, req.site)
    known = {s.name for s in store.list_sites()}
    trace = trace_name(req.site, window)
    params = {**req.to_dict(), "model": req.model_name, "window": window.describe(), "trace": trace,
              "production": production.ref if production else None, "warm_start": warm_note(production),
              "sites_without_size": sorted(set(window.sites) - known)}

    def make(run_id: int) -> Workflow:
        return Workflow(WORKFLOW, run_id, tuple(layers(cfg, run_id, req, window, trace, production)))
    return Plan(WORKFLOW, params, make)


def layers(cfg: Config, run_id: int, req: RetrainRequest, window, trace: str, production: Model | None) -> list[Layer]:
    root = Path(cfg.data_root).absolute()
    out = root / "retrain" / f"run-{run_id}"
    common = ("--catalog-url", cfg.catalog_url, "--run-id", str(run_id))
    who = ("--site", req.site) if req.site else ("--all",)
    held = window.held_out_from.isoformat()
    label = {"partition": req.site or "all"}
    export = (*common, *who, "--days", str(req.days), "--end", window.last.isoformat(), "--holdout", str(req.holdout),
              "--out", str(out), "--name", trace)
    train = (*common, "--trace-dataset", trace, "--until", held, "--name", req.model_name,
             *(("--site", req.site) if req.site else ()),
             *(("--warm-start", production.ref) if production else ()),
             *(("--epochs", str(req.epochs)) if req.epochs else ()))
    evaluate = (*common, "--trace", str(out / "trace.csv"), "--start", held,
                "--out", str(root / "evaluation" / f"run-{run_id}"), "--model", req.model_name, *(("--baseline-model", production.ref) if production else ()),
                *(("--sites", req.site) if req.site else ()), "--parent", trace)
    return [Layer("export", "feedback", export, (label,), retries=RETRIES["export"]),
            Layer("train", "train", train, (label,), parents=("export",), retries=RETRIES["train"]),
            Layer("evaluate", "evaluate", evaluate, (label,), parents=("train",), retries=RETRIES["evaluate"])]


def describe(plan_: Plan) -> str:
    """One line for people: what the run will train on and against what."""
    p, w = plan_.params, plan_.params["window"]
    who = f"site {p['site']}" if p["site"] else f"{len(w['sites'])} site(s) ({', '.join(w['sites'])})"
    requests = f", {w['requests']:,} requests" if w.get("requests") is not None else ""
    serves = f"site {p['site']}" if p["site"] else "every site without a model of its own"
    line = (f"retrain {p['model']} on the feedback of {who}: {w['first']}..{w['last']} ({w['feedback_days']} days"
            f"{requests}), held out from {w['held_out_from']}; {p['warm_start']}; promoted (to answer {serves}) "
            "only if it beats " + (f"{p['production']} and " if p["production"] else "") + "the best heuristic")
    if p["sites_without_size"]:
        line += (f" (no catalog cache size for {', '.join(p['sites_without_size'])}: judged at fractions of the "
                 "working set)")
    return line


def verdict_of(store: Store, run_id: int) -> dict | None:
    """The evaluate node's verdict of a retrain run (its evaluation dataset's), if it got that far."""
    for ds in store.list_datasets(kind="evaluation"):
        if ds.run_id == run_id and ds.meta.get("verdict"):
            return ds.meta["verdict"]
    return None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise Invalid(f"--end must be a day (YYYY-MM-DD), not {text!r}") from e


def main(argv: list[str] | None = None) -> int:
    """``python -m smartcache.submit.retrain --catalog-url URL --schedule RUN``: what a schedule's HTCondor cron
    job runs each period (see :mod:`smartcache.submit.schedule`)."""
    import argparse

    from smartcache.submit.schedule import fire
    p = argparse.ArgumentParser(prog="python -m smartcache.submit.retrain")
    p.add_argument("--catalog-url", required=True)
    p.add_argument("--schedule", type=int, required=True, help="the schedule's run id")
    a = p.parse_args(argv)
    return fire(a.catalog_url, a.schedule)


if __name__ == "__main__":
    sys.exit(main())
