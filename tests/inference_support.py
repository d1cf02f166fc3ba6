"""Helpers for the inference tests: real small Keras models, built once per session.

``build(outdir)`` runs this file in a child process (TensorFlow stays out of the pytest
process: it takes seconds to import and would be forked by the gunicorn test). The child
trains tiny MLPs for a few steps, exports SavedModel + TFLite through the project's own
:func:`smartcache.inference.modelformat.export_keras`, and writes a manifest with the Keras
predictions on probe rows, so that tests compare the served numbers to Keras's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FEATURES = ["is_mc", "tier_MINIAODSIM", "log_size", "n_access_7d"]
DEFAULTS = {"n_access_7d": 0.0}
PROBES = [[1.0, 1.0, 9.5, 3.0], [0.0, 0.0, 8.0, 0.0], [1.0, 0.0, 9.9, 12.0]]


def build(outdir: Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, __file__, str(outdir)], capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"model build failed:\n{proc.stderr[-3000:]}")
    return json.loads((outdir / "manifest.json").read_text())


def _mlp(n_in: int, seed: int, x, y):
    import keras
    keras.utils.set_random_seed(seed)
    norm = keras.layers.Normalization()
    norm.adapt(x)                       # normalisation baked into the graph
    inp = keras.Input((n_in,), name="features")
    h = keras.layers.Dense(8, activation="relu")(norm(inp))
    out = keras.layers.Dense(1, activation="sigmoid", name="score")(h)
    model = keras.Model(inp, out)
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model


def _frozen_graph(path: Path) -> None:
    """A TF1-style frozen GraphDef (what TFaaS 2019 served) with nodes 'input' and 'output'."""
    import numpy as np
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="input")
        w = tf.constant(np.array([[0.5], [-0.25], [0.1], [0.2]], np.float32))
        tf.sigmoid(tf.matmul(x, w), name="output")
    path.write_bytes(g.as_graph_def().SerializeToString())


def _main(outdir: Path) -> None:
    import numpy as np
    from smartcache.inference import modelformat as mf
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.integers(0, 2, 512), rng.integers(0, 2, 512), rng.normal(9, 0.5, 512),
                         rng.poisson(3, 512)]).astype("float32")
    y = ((x[:, 3] > 2) | (x[:, 1] > 0)).astype("float32")
    manifest: dict = {"features": FEATURES, "probes": PROBES, "models": {}}
    specs = {"v1": (4, 1, x, y), "v2": (4, 2, x, 1.0 - y), "w3": (3, 3, x[:, :3], y)}
    for key, (n_in, seed, xs, ys) in specs.items():
        model = _mlp(n_in, seed, xs, ys)
        arts = mf.export_keras(model, "cachemodel", outdir / f"work-{key}", description=f"test model {key}")
        for kind, data in arts.items():
            (outdir / f"{key}.{kind}").write_bytes(data)
        probes = np.array([p[:n_in] for p in PROBES], np.float32)
        manifest["models"][key] = {"n_inputs": n_in,
                                   "expected": model.predict(probes, verbose=0).tolist(),
                                   "savedmodel_dir": str(outdir / f"work-{key}" / "cachemodel")}
    _frozen_graph(outdir / "frozen.pb")
    (outdir / "manifest.json").write_text(json.dumps(manifest))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _main(Path(sys.argv[1]))


# -- used by the test modules ----------------------------------------------------------------
_BUILT: dict | None = None


def built_models() -> dict:
    """Build the test models once per pytest process (fixtures in several modules share it)."""
    global _BUILT
    if _BUILT is None:
        import atexit
        import shutil
        import tempfile
        d = Path(tempfile.mkdtemp(prefix="smartcache-test-models-"))
        atexit.register(shutil.rmtree, d, True)
        manifest = build(d)
        manifest["dir"] = str(d)
        _BUILT = manifest
    return _BUILT


def artifact(built: dict, key: str, kind: str) -> bytes:
    return (Path(built["dir"]) / f"{key}.{kind}").read_bytes()


def make_config(tmp_path: Path, *, token: str | None = None, max_upload_bytes: int = 64 << 20,
                cache_size: int = 10):
    from smartcache.catalog.config import Config, InferenceConfig
    home = tmp_path / "home"
    return Config(home=home, catalog_url=f"sqlite:///{tmp_path}/catalog.db", data_root=home / "data",
                  inference=InferenceConfig(token=token, max_upload_bytes=max_upload_bytes,
                                            model_cache_size=cache_size))


def make_app(tmp_path: Path, **kw):
    """(app, store) over a fresh SQLite catalog; no background refresh (tests call refresh_now)."""
    from smartcache.catalog import open_store
    from smartcache.inference import create_app
    fast_path = kw.pop("fast_path", True)
    cfg = make_config(tmp_path, **kw)
    store = open_store(cfg.catalog_url, migrate=True)
    return create_app(cfg, store, refresh_seconds=0, convert_timeout=300, fast_path=fast_path), store


def register(store, built: dict, key: str = "v1", name: str = "cachemodel", *, stage: str = "production",
             features: list[str] | None = None, **params):
    from smartcache.inference import modelformat as mf
    arts = {k: artifact(built, key, k) for k in (mf.ART_TFLITE, mf.ART_SAVEDMODEL, mf.ART_PARAMS)}
    if name != "cachemodel":
        arts.pop(mf.ART_SAVEDMODEL)
        arts[mf.ART_PARAMS] = mf.params_json({**json.loads(arts[mf.ART_PARAMS]), "name": name})
    n = built["models"][key]["n_inputs"]
    feats = FEATURES[:n] if features is None else features
    return mf.register(store, name, arts, input_features=feats, stage=stage, **params)


def service(app):
    return app.extensions["smartcache"]
