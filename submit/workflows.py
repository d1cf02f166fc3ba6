"""Which nodes and which edges: smartcache's workflows as data (:class:`~smartcache.condor.dag.Workflow`).

- ``reduce``: one node per daily raw partition found under the source (or per chunk of K days),
  throttled by a ``reduce`` category, then one ``features`` fan-in node over the chosen window;
- ``train``, ``evaluate``, ``score``, ``push``: one node each;
- ``pipeline``: reduce → features → train → evaluate → score → push in one DAG.

The argv each ``python -m smartcache.tasks.<kind>`` node receives (the tasks' own options)::

    reduce   --catalog-url URL --run-id N --out DATA --no-progress SOURCE...   (writes DATA/reduced/...)
    features --catalog-url URL --run-id N --reduced reduced --out DATA --from D1 --to D2 --name features/D1_D2 \
             --horizon 3   (also writes the request-level training rows features/D1_D2.requests)
    train    --catalog-url URL --run-id N --features FEATURES --name MODEL [EXTRA...]
    evaluate --catalog-url URL --run-id N --model MODEL --out DATA/evaluation/run-N [--raw SOURCE] [EXTRA...]
    score    --catalog-url URL --run-id N --features FEATURES --model MODEL --out DATA/placements/run-N [EXTRA...]
    push     --catalog-url URL --run-id N [EXTRA...]

Nodes also get SMARTCACHE_HOME/CATALOG_URL/DATA of the submitter's configuration in their
environment, so a task that loads the configuration sees the same one under any job user.
A builder returns a :class:`Plan`: validation and partition discovery happen before a run row
exists; ``plan.make(run_id)`` gives the workflow once the run id is known. Given the catalog
(``store=``), a builder also checks what the nodes will look up there -- the sites score and push
need, the model score and evaluate read, the feature table -- so that a pipeline fails before it
reduces months of logs, not at its score node.
"""

from __future__ import annotations

import calendar
import importlib.util
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import fsspec

from smartcache.catalog.config import Config
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.condor.dag import Layer, Workflow
from smartcache.condor.submitdesc import quote_args

if TYPE_CHECKING:  # pragma: no cover
    from smartcache.catalog import Store

RETRIES = {"reduce": 2, "features": 1, "train": 1, "evaluate": 1, "score": 1, "push": 2}
SINGLE = ("train", "evaluate", "score", "push")
DEFAULT_MODEL = "cachenet"     # tasks/train.py's default model name
# Label horizon of the pipeline's feature table, in days: what the model predicts is "read again at the site
# within H days of this read", and its cache policy discounts a file's value by e every H days unread.
# Caches of a few percent of a site's working set turn over in days; see tasks/features.DEFAULT_HORIZON.
FEATURE_HORIZON = 3
_PART = re.compile(r"year=(\d{4})/month=(\d{1,2})/day=(\d{1,2})/part-\d+\.(?:avro|json\.gz|json)$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Partition:
    day: date
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    workflow: str
    params: dict
    make: Callable[[int], Workflow] = field(repr=False)


def data_dirs(cfg: Config) -> dict[str, str]:
    root = Path(cfg.data_root).absolute()
    return {k: str(root / k) for k in ("raw", "reduced", "features", "models", "evaluation", "placements")}


# -- partitions -----------------------------------------------------------------------------
def parse_month(text: str) -> tuple[int, int]:
    m = _MONTH.match(text or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise Invalid(f"month must look like 2026-10, not {text!r}")
    return int(m.group(1)), int(m.group(2))


def list_partitions(source: str) -> list[Partition]:
    """Every daily partition under ``source`` (a path or an fsspec URI), oldest first."""
    fs, root = fsspec.core.url_to_fs(source)
    if not fs.exists(root):
        raise NotFound(f"no raw data at {source} (run `smartcache generate logs` first?)")
    by_day: dict[date, list[str]] = {}
    for path in fs.glob(root.rstrip("/") + "/year=*/month=*/day=*/part-*"):
        m = _PART.search(path)
        if m:
            day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            by_day.setdefault(day, []).append(fs.unstrip_protocol(path) if _remote(fs) else path)
    return [Partition(d, tuple(sorted(p))) for d, p in sorted(by_day.items())]


def _remote(fs) -> bool:
    return "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def select_months(parts: Sequence[Partition], months: int, end: str | None) -> list[Partition]:
    """The partitions of the ``months`` calendar months ending with ``end`` (default: the newest found)."""
    if months < 1:
        raise Invalid("--months must be at least 1")
    if not parts:
        raise NotFound("no raw partitions found")
    year, month = parse_month(end) if end else (parts[-1].day.year, parts[-1].day.month)
    last = date(year, month, calendar.monthrange(year, month)[1])
    index = year * 12 + (month - 1) - (months - 1)
    first = date(index // 12, index % 12 + 1, 1)
    chosen = [p for p in parts if first <= p.day <= last]
    if not chosen:
        raise NotFound(f"no raw partitions between {first} and {last}")
    return chosen


def chunked(parts: Sequence[Partition], size: int) -> list[list[Partition]]:
    if size < 1:
        raise Invalid("--chunk must be at least 1")
    return [list(parts[i:i + size]) for i in range(0, len(parts), size)]


def _label(parts: Sequence[Partition]) -> str:
    first, last = parts[0].day.isoformat(), parts[-1].day.isoformat()
    return first if first == last else f"{first}..{last}"


# -- layers ---------------------------------------------------------------------------------
def _common(cfg: Config, run_id: int) -> tuple[str, ...]:
    return ("--catalog-url", cfg.catalog_url, "--run-id", str(run_id))


def features_name(parts: Sequence[Partition]) -> str:
    """The catalog name the features node gives its table (train and score read it)."""
    return f"features/{parts[0].day.isoformat()}_{parts[-1].day.isoformat()}"


def _reduce_layers(cfg: Config, run_id: int, chunks: list[list[Partition]]) -> list[Layer]:
    root = str(Path(cfg.data_root).absolute())
    node_vars = tuple({"partition": _label(c), "sources": quote_args([p for part in c for p in part.paths]),
                       "inputs": ",".join(p for part in c for p in part.paths)} for c in chunks)
    window = [p for c in chunks for p in c]
    features = ("--reduced", "reduced", "--out", root, "--from", window[0].day.isoformat(),
                "--to", window[-1].day.isoformat(), "--name", features_name(window), "--horizon", str(FEATURE_HORIZON))
    return [
        Layer("reduce", "reduce", (*_common(cfg, run_id), "--out", root, "--no-progress", "$(sources)"), node_vars,
              retries=RETRIES["reduce"], category="reduce"),
        Layer("features", "features", (*_common(cfg, run_id), *features), ({"partition": _label(window)},),
              parents=("reduce",), retries=RETRIES["features"]),
    ]


def _model_layer(cfg: Config, run_id: int, kind: str, *, model: str, features: str | None,
                 raw: str | None = None, extra: Sequence[str] = (), parents: tuple[str, ...] = ()) -> Layer:
    d, common = data_dirs(cfg), _common(cfg, run_id)
    if kind in ("train", "score") and not features:
        raise Invalid(f"{kind} needs a feature table (--features NAME)")
    argv = {
        "train": (*common, "--features", features, "--name", model),
        "evaluate": (*common, "--model", model, "--out", f"{d['evaluation']}/run-{run_id}",
                     *(("--raw", raw) if raw else ())),
        "score": (*common, "--features", features, "--model", model, "--out", f"{d['placements']}/run-{run_id}"),
        "push": common,
    }[kind]
    return Layer(kind, kind, (*argv, *extra), ({"partition": model},), parents=parents, retries=RETRIES[kind])


# -- plans ----------------------------------------------------------------------------------
def reduce(cfg: Config, *, months: int, end: str | None = None, source: str | None = None,
           chunk: int = 1) -> Plan:
    src = source or data_dirs(cfg)["raw"]
    found = list_partitions(src)
    if not found:
        raise NotFound(f"no raw partitions under {src} (run `smartcache generate logs` first?)")
    chunks = chunked(select_months(found, months, end), chunk)
    window = [p for c in chunks for p in c]
    params = {"months": months, "end": end, "source": src, "chunk": chunk, "partitions": len(window),
              "features": features_name(window)}
    throttle = {"reduce": cfg.condor.max_jobs}
    return Plan("reduce", params, lambda run_id: Workflow("reduce", run_id, tuple(_reduce_layers(cfg, run_id, chunks)),
                                                          throttle))


def single(cfg: Config, kind: str, *, model: str, features: str | None = None, extra: Sequence[str] = (),
           store: "Store | None" = None) -> Plan:
    """``train``, ``evaluate``, ``score`` or ``push`` on its own."""
    if kind not in SINGLE:
        raise Invalid(f"unknown workflow {kind}")
    _model_layer(cfg, 0, kind, model=model, features=features, extra=extra)      # validate now
    if store is not None:
        if kind in ("train", "score"):
            store.get_dataset(features)          # NotFound names it
        if kind in ("evaluate", "score"):
            need_model(store, model)
        if kind == "score":
            need_sites(store, extra)
        if kind == "push":
            need_placements(store, extra)
    params = {"model": model, "features": features, "extra": list(extra)}
    return Plan(kind, params, lambda run_id: Workflow(kind, run_id, (
        _model_layer(cfg, run_id, kind, model=model, features=features, extra=extra),)))


def pipeline(cfg: Config, *, months: int, end: str | None = None, source: str | None = None, chunk: int = 1,
             model: str = DEFAULT_MODEL, store: "Store | None" = None) -> Plan:
    if store is not None:                      # the train node makes the model; score and push need sites
        need_sites(store, (), push=True)
    red = reduce(cfg, months=months, end=end, source=source, chunk=chunk)

    def make(run_id: int) -> Workflow:
        layers = list(red.make(run_id).layers)
        parent = "features"
        for kind in SINGLE:
            layers.append(_model_layer(cfg, run_id, kind, model=model, features=red.params["features"],
                                       raw=red.params["source"], parents=(parent,)))
            parent = kind
        return Workflow("pipeline", run_id, tuple(layers), {"reduce": cfg.condor.max_jobs})
    return Plan("pipeline", {**red.params, "model": model}, make)


# -- what the nodes will find in the catalog ----------------------------------------------------
def _named_sites(extra: Sequence[str]) -> list[str]:
    """The ``--site NAME`` (or ``--site=NAME``) a task is given after ``--``."""
    names = []
    for i, arg in enumerate(extra):
        if arg == "--site" and i + 1 < len(extra):
            names.append(extra[i + 1])
        elif arg.startswith("--site="):
            names.append(arg.split("=", 1)[1])
    return names


def need_sites(store: "Store", extra: Sequence[str], *, push: bool = False) -> None:
    """The sites the score (and, with ``push``, the push) node will use exist (and have a destination)."""
    named = _named_sites(extra)
    sites = [store.get_site(n) for n in named] if named else store.list_sites()
    if not sites:
        raise NotFound("no sites in the catalog (the score node needs them): "
                       "add them with 'smartcache sites add NAME --cache-size SIZE --push URI'")
    if push:
        without = [s.name for s in sites if not s.push_uri]
        if without:
            raise Invalid(f"site(s) without a push destination: {', '.join(without)}; the push node would fail: "
                          "set one with 'smartcache sites set NAME --push URI'")


def need_model(store: "Store", ref: str) -> None:
    """``NAME`` or ``NAME:VERSION`` is in the catalog (score and evaluate load it)."""
    name, sep, version = ref.rpartition(":")
    if not sep or not version.isdigit():
        name, version = ref, ""
    if not store.list_models(name):
        raise NotFound(f"no model {name} in the catalog: train one first ('smartcache submit train' or "
                       "'submit pipeline')")
    if version:
        store.get_model(name, int(version))          # NotFound names the version


def need_placements(store: "Store", extra: Sequence[str]) -> None:
    """Some placement list exists to push (for the ``--site`` named, if any)."""
    names = _named_sites(extra) or [s.name for s in store.list_sites()]
    if not any(store.list_placements(n) for n in names):
        raise NotFound("no placement lists to push" + (f" for {', '.join(names)}" if names else "")
                       + ": score first ('smartcache submit score')")


def missing_tasks(wf: Workflow) -> list[str]:
    """Task modules the workflow needs that are not installed (yet)."""
    return sorted({layer.task for layer in wf.layers
                   if importlib.util.find_spec(f"smartcache.tasks.{layer.task}") is None})
