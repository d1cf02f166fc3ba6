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


def build(outdir: Path, *args: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, __file__, str(outdir), *args], capture_output=True, text=True,
                          env=env, timeout=900)
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


# -- TFaaS users' models, saved the way they save them, and hostile ones ------------------------
def _keras_models(x, y) -> dict:
    import keras

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.d1 = keras.layers.Dense(8, activation="relu")
            self.d2 = keras.layers.Dense(1, activation="sigmoid")

        def call(self, inputs):
            return self.d2(self.d1(inputs))

    keras.utils.set_random_seed(11)
    inp = keras.Input((4,), name="features")
    functional = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Dense(8, activation="relu")(inp)))
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                   keras.layers.Dense(1, activation="sigmoid")])
    models = {"functional": functional, "sequential": sequential, "subclassed": Subclassed()}
    for m in models.values():
        m.compile("adam", "binary_crossentropy")
        m.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return models


def _module(tf, np, writer_path: str | None = None):
    """A tf.Module with variables; with ``writer_path`` it holds a resource whose initializer
    (run by tf.saved_model.load) writes that file."""
    class Writer(tf.saved_model.experimental.TrackableResource):
        def __init__(self, path):
            self._path = path
            super().__init__()

        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self):
            tf.io.write_file(self._path, "written by an uploaded model\n")
            tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=tf.constant(1.0))

    class Module(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.array([[0.3], [-0.2], [0.05], [0.1]], np.float32))
            self.b = tf.Variable([0.25])
            self.writer = Writer(writer_path) if writer_path else None

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x):
            y = tf.matmul(x, self.w) + self.b
            if self.writer is not None:
                y = y * tf.raw_ops.ReadVariableOp(resource=self.writer.resource_handle, dtype=tf.float32)
            return tf.sigmoid(y)
    return Module()


def _tf1_graph(tf, np):
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="input")
        w = tf.compat.v1.get_variable("w", initializer=np.array([[0.4], [-0.3], [0.02], [0.15]], np.float32))
        tf.sigmoid(tf.matmul(x, w) - 1.0, name="output")
    return g


def _tf1_savedmodel(tf, np, path: Path, main_op=None) -> list:
    """A TF1 SavedModel with variables; ``main_op(tf)`` builds the op tf.saved_model.load runs."""
    g = _tf1_graph(tf, np)
    with g.as_default(), tf.compat.v1.Session(graph=g) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        x, y = g.get_tensor_by_name("input:0"), g.get_tensor_by_name("output:0")
        sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        b = tf.compat.v1.saved_model.Builder(str(path))
        b.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig},
                                       main_op=main_op(tf) if main_op else None)
        b.save()
        return sess.run(y, {x: np.array(PROBES, np.float32)}).tolist()


def _frozen_with_variables(tf, np, path: Path) -> list:
    g = _tf1_graph(tf, np)
    with g.as_default(), tf.compat.v1.Session(graph=g) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["output"])
        path.write_bytes(frozen.SerializeToString())
        return sess.run("output:0", {"input:0": np.array(PROBES, np.float32)}).tolist()


def _tfaas_main(outdir: Path, targets: dict) -> None:
    """Good models of every kind a TFaaS user uploads, and hostile ones aiming at ``targets``:
    ``outside`` (a host file), ``pth`` (a .pth file in the venv), ``config`` (config.toml to read)."""
    import numpy as np
    import tensorflow as tf
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = (x[:, 0] + x[:, 3] > 0).astype("float32")
    probes = np.array(PROBES, np.float32)
    manifest: dict = {"probes": PROBES, "good": {}, "hostile": {}}
    for kind, model in _keras_models(x, y).items():
        tf.saved_model.save(model, str(outdir / kind))        # as TFaaS' docs do
        manifest["good"][kind] = {"expected": model.predict(probes, verbose=0).tolist()}
    module = _module(tf, np)
    tf.saved_model.save(module, str(outdir / "module"), signatures=module.__call__)
    manifest["good"]["module"] = {"expected": module(probes).numpy().tolist()}
    manifest["good"]["tf1"] = {"expected": _tf1_savedmodel(tf, np, outdir / "tf1")}
    manifest["good"]["frozen"] = {"expected": _frozen_with_variables(tf, np, outdir / "frozen.pb"),
                                  "inputNode": "input", "outputNode": "output"}
    hostile = {
        "main_op_outside": lambda t: t.io.write_file(targets["outside"], "written by main_op\n"),
        "main_op_pth": lambda t: t.io.write_file(targets["pth"], "# written by main_op\n"),
        "main_op_config": lambda t: t.debugging.Assert(
            t.constant(False), [t.io.read_file(targets["config"])], summarize=10_000),
    }
    for kind, op in hostile.items():
        _tf1_savedmodel(tf, np, outdir / kind, main_op=op)
        manifest["hostile"][kind] = {}
    for kind, target in (("resource_outside", targets["outside"]), ("resource_pth", targets["pth"])):
        evil = _module(tf, np, target)
        tf.saved_model.save(evil, str(outdir / kind), signatures=evil.__call__)
        manifest["hostile"][kind] = {}
    (outdir / "manifest.json").write_text(json.dumps(manifest))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if len(sys.argv) > 2:
        _tfaas_main(Path(sys.argv[1]), json.loads(sys.argv[2]))
    else:
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


_TFAAS: dict | None = None


def tfaas_models(targets: dict[str, str]) -> dict:
    """TFaaS users' SavedModels of every kind and the hostile ones (see _tfaas_main),
    built once per pytest process; ``targets`` are the host paths the hostile ones aim at."""
    global _TFAAS
    if _TFAAS is None:
        import atexit
        import shutil
        import tempfile
        d = Path(tempfile.mkdtemp(prefix="smartcache-test-tfaas-"))
        atexit.register(shutil.rmtree, d, True)
        manifest = build(d, json.dumps(targets))
        manifest["dir"] = str(d)
        _TFAAS = manifest
    return _TFAAS


def bundle(folder: Path | str, name: str) -> bytes:
    """A SavedModel folder as the gzip tarball TFaaS users send (``tar czf name.tar.gz name``)."""
    from smartcache.inference import modelformat as mf
    return mf.pack_savedmodel(folder, name)


def artifact(built: dict, key: str, kind: str) -> bytes:
    return (Path(built["dir"]) / f"{key}.{kind}").read_bytes()


TOKEN = "test-token-0123456789abcdef"     # a usable token (16+ characters)


def make_config(tmp_path: Path, *, token: str | None = None, max_upload_bytes: int = 64 << 20,
                cache_size: int = 10, auth: bool | None = None, sandbox: str = "bubblewrap"):
    """Without a token, auth is off (as ``serve --no-auth``) unless ``auth=True`` says otherwise."""
    from smartcache.catalog.config import Config, InferenceConfig
    home = tmp_path / "home"
    return Config(home=home, catalog_url=f"sqlite:///{tmp_path}/catalog.db", data_root=home / "data",
                  inference=InferenceConfig(token=token, auth=token is not None if auth is None else auth,
                                            max_upload_bytes=max_upload_bytes, model_cache_size=cache_size,
                                            sandbox=sandbox))


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
