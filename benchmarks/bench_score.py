"""Bulk-scoring throughput: the TFLite/LiteRT scorer against TensorFlow's own ways of running the model.

    python benchmarks/bench_score.py [--rows 1000000] [--features 16]

Builds the training network (untrained weights score as fast as trained ones), exports it the way
``tasks/train`` does, and scores the *same* rows every way in this run, each warmed up first and
timed best of ``--repeat``: Keras ``model.predict``, ``predict_on_batch`` and a ``tf.function`` over
chunks (the baselines), and the scorer at several batch sizes on 1 and 2 interpreter threads.
Reported: rows/s (wall) and rows per CPU-second (process time over all threads: per core, so
TensorFlow's use of every core and the scorer's single thread compare fairly). The headline is
against the strongest baseline of this run per core and, separately, in wall time (``tf.function``
or ``predict_on_batch``: the fastest differs by measure and by load).
Target: >= 2M rows/s per core for the scorer.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def best_of(fn, repeat: int) -> tuple[float, float]:
    """(wall s, CPU s) of the fastest of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
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

    chunk = 65536
    fn = tf.function(lambda v: model(v, training=False),
                     input_signature=[tf.TensorSpec([None, args.features], tf.float32)])
    baselines = {
        f"keras model.predict (batch {chunk})": lambda rows: model.predict(rows, batch_size=chunk, verbose=0),
        f"keras predict_on_batch (chunks of {chunk})":
            lambda rows: [model.predict_on_batch(rows[i:i + chunk]) for i in range(0, len(rows), chunk)],
        f"tf.function (chunks of {chunk})": lambda rows: [fn(rows[i:i + chunk]) for i in range(0, len(rows), chunk)],
    }
    ours = {}
    for batch in (2048, 4096, 16384, 65536):
        ours[f"TFLite scorer, 1 thread, batch {batch}"] = Scorer(arts["tflite"], [], batch_rows=batch, num_threads=1)
    ours["TFLite scorer, 2 threads, batch 4096"] = Scorer(arts["tflite"], [], batch_rows=4096, num_threads=2)

    results: dict[str, tuple[float, float]] = {}
    for label, run in baselines.items():
        run(x[:chunk])                                  # warm-up: tracing, predict-function build
        results[label] = best_of(lambda: run(x), args.repeat)
    for label, scorer in ours.items():
        scorer.predict(x[:8192])
        results[label] = best_of(lambda: scorer.predict(x), args.repeat)

    n = args.rows
    per_core = {k: n / c for k, (_, c) in results.items()}
    wall = {k: n / w for k, (w, _) in results.items()}
    strongest = max(baselines, key=lambda k: per_core[k])
    print(f"{n:,} rows x {args.features} features (every contender the same rows), MLP 64-32-1 with "
          f"log+normalisation in the graph; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"  {'contender':46s} {'M rows/s':>9s} {'M rows/s/core':>14s} {'x strongest/core':>17s}")
    for label in results:
        mark = "  <- strongest baseline" if label == strongest else ""
        print(f"  {label:46s} {wall[label] / 1e6:9.2f} {per_core[label] / 1e6:14.2f} "
              f"{per_core[label] / per_core[strongest]:17.1f}{mark}")
    one = max((k for k in ours if "1 thread" in k), key=lambda k: per_core[k])
    two = next(k for k in ours if "2 threads" in k)
    fastest = max(baselines, key=lambda k: wall[k])          # the strongest baseline in wall time
    print(f"headline: {one}: {per_core[one] / per_core[strongest]:.1f}x per core vs {strongest} (strongest per "
          f"core); {wall[one] / wall[fastest]:.2f}x wall vs {fastest} (strongest in wall time); "
          f"2 threads: {wall[two] / wall[fastest]:.2f}x wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
