"""The naive baseline of bench_inference.py: Flask calling ``model.predict`` on every request.

What a first TFaaS-like Python service does: load the Keras model once, then run the full
Keras/TensorFlow graph per request. Run under gunicorn as ``naive_app:app`` with
``NAIVE_MODEL=/path/model.keras``.
"""

from __future__ import annotations

import os

import numpy as np
from flask import Flask, jsonify, request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

app = Flask(__name__)
model = keras.models.load_model(os.environ["NAIVE_MODEL"])


@app.post("/json")
def predict():
    body = request.get_json(force=True)
    x = np.array([body["values"]], dtype=np.float32)
    return jsonify(model.predict(x, verbose=0)[0].tolist())


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
