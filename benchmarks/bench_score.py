"""Bulk-scoring throughput: the TFLite/LiteRT scorer against Keras ``model.predict`` and a ``tf.function``.

    python benchmarks/bench_score.py [--rows 1000000] [--features 16]

Builds the training network (untrained weights score as fast as trained ones), exports it the way
``tasks/train`` does, and times scoring the same rows three ways in this run; prints rows/s and the
ratio against ``model.predict`` (the baseline). One interpreter thread = one core. Target: >= 2M rows/s
per core for the scorer.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=16)
    args = ap.parse_args(argv)

    from smartcache.tasks.score.scorer import Scorer
    from smartcache.tasks.train.model import FitConfig, build_model, export, norm_stats, tensorflow
    tf, _ = tensorflow(seed=1)
    rng = np.random.default_rng(0)
    x = (rng.gamma(0.5, 20.0, (args.rows, args.features))).astype(np.float32)
    mean, var = norm_stats(x[:100_000])
    model = build_model(args.features, mean, var, FitConfig())
    with tempfile.TemporaryDirectory() as tmp:
        arts = export(model, "bench", Path(tmp), description="bench", params={})

    results: list[tuple[str, float]] = []
    n_keras = min(args.rows, 300_000)
    t = best_of(lambda: model.predict(x[:n_keras], batch_size=65536, verbose=0), repeat=2)
    results.append(("keras model.predict (batch 65536)", n_keras / t))
    fn = tf.function(lambda v: model(v, training=False),
                     input_signature=[tf.TensorSpec([None, args.features], tf.float32)])
    chunk = 65536
    t = best_of(lambda: [fn(x[i:i + chunk]) for i in range(0, args.rows, chunk)])
    results.append((f"tf.function (chunks of {chunk})", args.rows / t))
    for batch in (2048, 4096, 16384, 65536):
        scorer = Scorer(arts["tflite"], [], batch_rows=batch, num_threads=1)
        scorer.predict(x[:batch])
        t = best_of(lambda: scorer.predict(x))
        results.append((f"TFLite scorer, 1 thread, batch {batch}", args.rows / t))
    scorer = Scorer(arts["tflite"], [], batch_rows=4096, num_threads=2)
    t = best_of(lambda: scorer.predict(x))
    results.append(("TFLite scorer, 2 threads, batch 4096", args.rows / t))

    base = results[0][1]
    print(f"{args.rows} rows x {args.features} features, MLP 64-32-1 with log+normalisation in the graph")
    for label, rate in results:
        print(f"  {label:42s} {rate / 1e6:8.2f} M rows/s   x{rate / base:6.1f} vs model.predict")
    return 0


if __name__ == "__main__":
    sys.exit(main())
