"""Serving models from the catalog: lazy loading, a bounded LRU cache, atomic version swaps.

A request takes a :class:`ServingModel` reference from the :class:`ModelCache` and runs on
it; an upload or a refresh that finds a newer version builds the new ServingModel completely
and then replaces the cache entry in one assignment. Requests already holding the old
reference finish on it; the old interpreters are freed when the last one lets go.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from smartcache.catalog import Model, Store
from smartcache.catalog.base import check_name
from smartcache.catalog.config import make_private_dir
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.inference import modelformat as mf
from smartcache.inference.runtime import Predictor
from smartcache.inference.sandbox import Sandbox

_STRIPES = 64
_NEGATIVE_MAX = 1024


@dataclass(frozen=True, eq=False)
class ServingModel:
    name: str
    version: int
    stage: str
    created: datetime
    input_features: tuple[str, ...]
    params: Mapping[str, Any]
    predictor: Predictor = field(repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def n_inputs(self) -> int:
        return self.predictor.info.n_inputs

    @property
    def threshold(self) -> float:
        return float(self.params.get("threshold", mf.DEFAULT_THRESHOLD))

    @property
    def feature_defaults(self) -> Mapping[str, float]:
        return self.params.get("feature_defaults") or {}

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predictor.predict(x)


def record_tfaas_params(record: Model) -> dict[str, Any]:
    """TFaaS-style params of a catalog version (as uploaded, else synthesised) plus catalog facts."""
    base: dict[str, Any] = {"name": record.name, "model": "model.tflite", "labels": "", "options": [],
                            "inputNode": "", "outputNode": "", "description": record.description or "",
                            "timestamp": record.created.isoformat()}
    base.update(record.params.get("tfaas") or {})
    base.update({"name": record.name, "version": record.version, "stage": record.stage,
                 "framework": record.framework, "input_features": list(record.input_features)})
    return base


def load_serving_model(store: Store, record: Model, *, convert_timeout: float = 300.0,
                       sandbox: Sandbox = Sandbox()) -> ServingModel:
    """Build the ServingModel of a catalog version from its ``tflite`` (or ``savedmodel``) artifact."""
    kinds = {a.kind for a in record.artifacts}
    if mf.ART_TFLITE in kinds:
        tflite = store.model_artifact(record.name, record.version, mf.ART_TFLITE)
    elif mf.ART_SAVEDMODEL in kinds:
        tflite = _convert_artifact(store, record, convert_timeout, sandbox)
    else:
        raise Invalid(f"model {record.ref} has neither a {mf.ART_TFLITE} nor a {mf.ART_SAVEDMODEL} artifact")
    norm = record.params.get("normalization")
    mean, std = mf.check_normalization(norm, None) if norm else (None, None)
    predictor = Predictor(tflite, mean, std)
    features = tuple(record.input_features or ())
    if features and len(features) != predictor.info.n_inputs:
        raise Invalid(f"model {record.ref} lists {len(features)} input features but takes "
                      f"{predictor.info.n_inputs} inputs")
    if mean is not None and len(mean) != predictor.info.n_inputs:
        raise Invalid(f"model {record.ref}: normalization has {len(mean)} entries, model takes "
                      f"{predictor.info.n_inputs} inputs")
    return ServingModel(record.name, record.version, record.stage, record.created, features,
                        dict(record.params), predictor)


def _convert_artifact(store: Store, record: Model, timeout: float, sandbox: Sandbox) -> bytes:
    """A catalog SavedModel without a TFLite form: converted (and checked) like an upload, sandboxed."""
    from smartcache.inference.convert import convert_in_child
    data = store.model_artifact(record.name, record.version, mf.ART_SAVEDMODEL)
    with tempfile.TemporaryDirectory(prefix="smartcache-model-") as tmp:
        _, model_dir = mf.unpack_savedmodel(data, Path(tmp))
        return convert_in_child("savedmodel", model_dir, timeout=timeout, sandbox=sandbox).tflite


Loader = Callable[[Store, Model], ServingModel]


class ModelCache:
    """Name -> ServingModel, least recently used first out; safe for many threads."""

    def __init__(self, store: Store, capacity: int, loader: Loader = load_serving_model,
                 negative_ttl: float = 5.0, stamp: Callable[[], int] = lambda: 0):
        if capacity < 1:
            raise Invalid("model cache size must be at least 1")
        self.store, self.capacity, self.loader = store, capacity, loader
        self.negative_ttl = negative_ttl
        self.stamp = stamp      # the shared change counter (see generation.py)
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, ServingModel] = OrderedDict()
        self._missing: dict[str, float] = {}
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self.loads = 0

    def get(self, name: str) -> ServingModel:
        with self._lock:
            m = self._entries.get(name)
            if m is not None:
                self._entries.move_to_end(name)
                return m
        check_name(name, "model name")
        with self._stripes[hash(name) % _STRIPES]:   # one loader per name, others wait for it
            with self._lock:
                m = self._entries.get(name)
                if m is not None:
                    return m
                if self._missing.get(name, 0.0) > time.monotonic():
                    raise NotFound(f"no model {name}")
            before = self.stamp()
            try:
                record = self.store.get_model(name)
            except NotFound:
                self._remember_missing(name, before)
                raise
            m = self.loader(self.store, record)
            if self.stamp() == before:
                self.install(m)
            # else: the catalog changed while loading; serve this request, cache nothing stale
            return m

    def peek(self, name: str) -> ServingModel | None:
        with self._lock:
            return self._entries.get(name)

    def install(self, model: ServingModel) -> None:
        """Make ``model`` the one served under its name (the atomic swap)."""
        with self._lock:
            self._missing.pop(model.name, None)
            self._entries[model.name] = model
            self._entries.move_to_end(model.name)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            self.loads += 1

    def evict(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def cached(self) -> list[ServingModel]:
        with self._lock:
            return list(self._entries.values())

    def refresh(self) -> list[str]:
        """Swap in versions newer in the catalog than the cached ones; drop deleted models."""
        changed = []
        for cur in self.cached():
            try:
                record = self.store.get_model(cur.name)
            except NotFound:
                self.evict(cur.name)
                changed.append(f"{cur.ref} -> deleted")
                continue
            if record.version != cur.version:
                self.install(self.loader(self.store, record))
                changed.append(f"{cur.ref} -> {record.ref}")
        return changed

    def sync(self) -> list[str]:
        """After another worker changed the catalog: forget absent names, drop cached versions that
        are no longer the served ones (they load again on next use)."""
        with self._lock:
            self._missing.clear()
        changed = []
        for cur in self.cached():
            try:
                version = self.store.get_model(cur.name).version
            except NotFound:
                version = None
            if version != cur.version:
                with self._lock:
                    if self._entries.get(cur.name) is cur:
                        del self._entries[cur.name]
                changed.append(f"{cur.ref} -> {'deleted' if version is None else f'{cur.name}:{version}'}")
        return changed

    def _remember_missing(self, name: str, stamp: int) -> None:
        with self._lock:
            if self.stamp() != stamp:
                return      # the catalog changed meanwhile: "missing" may be stale already
            if len(self._missing) >= _NEGATIVE_MAX:
                self._missing.clear()
            self._missing[name] = time.monotonic() + self.negative_ttl


class DefaultModel:
    """The default model name that ``POST /params`` sets, shared by every worker via a file.

    With ``generation`` (the service's shared change counter, read and bumped), :meth:`set` counts a change
    and :meth:`get` looks at the file only after one: ``/decide`` asks for the default at every request,
    and a ``stat`` per request cost more than the rest of choosing the model.
    """

    def __init__(self, path: Path, generation: Any = None):
        self.path = path
        self.generation = generation
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._params: dict[str, Any] = {}
        self._seen: int | None = None       # the generation the file was last looked at in

    def get(self) -> dict[str, Any]:
        if self.generation is None:
            return self._read()
        gen = self.generation.current()     # read before the file: a change during the read looks again
        if gen != self._seen:
            params = self._read()
            self._seen = gen
            return params
        return self._params

    def _read(self) -> dict[str, Any]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._params, self._stamp = {}, None
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            with self._lock:
                try:
                    self._params = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    return self._params  # a torn read cannot happen (rename), but stay safe
                self._stamp = stamp
        return self._params

    @property
    def name(self) -> str | None:
        return self.get().get("name") or None

    def set(self, params: Mapping[str, Any]) -> None:
        make_private_dir(self.path.parent)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".default-")
        with os.fdopen(fd, "w") as fh:
            json.dump(dict(params), fh)
        os.replace(tmp, self.path)   # atomic for readers in other workers
        if self.generation is not None:
            self.generation.bump()      # they look at the file before their next answer
