"""The baselines of bench_inference.py: Flask calling the Keras model on every request.

``NAIVE_MODE=predict`` (default) is what a first TFaaS-like Python service does: load the
Keras model once, then ``model.predict`` per request (Keras' whole batching machinery for one
row). ``NAIVE_MODE=function`` is the fair baseline: the same Flask app calling the model through
one ``tf.function`` traced once for ``[None, n]`` float32 inputs (no retracing, no Keras
predict loop), the fastest way to run the Keras model itself per request. Run under gunicorn
as ``naive_app:app`` with ``NAIVE_MODEL=/path/model.keras``.
"""

from __future__ import annotations

import os

import numpy as np
from flask import Flask, jsonify, request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

app = Flask(__name__)
model = keras.models.load_model(os.environ["NAIVE_MODEL"])
MODE = os.environ.get("NAIVE_MODE", "predict")
if MODE not in ("predict", "function"):
    raise SystemExit(f"NAIVE_MODE must be predict or function, not {MODE!r}")
_n_inputs = int(model.inputs[0].shape[-1])
_call = tf.function(lambda x: model(x, training=False),
                    input_signature=[tf.TensorSpec([None, _n_inputs], tf.float32)])


@app.post("/json")
def predict():
    body = request.get_json(force=True)
    x = np.array([body["values"]], dtype=np.float32)
    if MODE == "function":
        return jsonify(_call(x).numpy()[0].tolist())
    return jsonify(model.predict(x, verbose=0)[0].tolist())


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
