"""Convert and check uploaded models in a child process.

An uploaded model is untrusted: TensorFlow's loaders and the TFLite runtime are large C++
code bases that a crafted file can crash. So conversion (SavedModel or TF1 frozen graph to
TFLite) and the first load of any uploaded TFLite model run in a separate process with a
timeout; the serving process only loads the result after the child said it is sound. It
also keeps TensorFlow (seconds to import, a GB of memory) out of the serving workers.

Run as ``python -m smartcache.inference.convert KIND INPUT OUTPUT [--input-node N --output-node N]``;
prints a JSON :class:`~smartcache.inference.runtime.ModelInfo` on success, exits 2 with one
line on stderr for a bad model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from smartcache.catalog.errors import Invalid, SmartcacheError, Unavailable
from smartcache.inference.runtime import ModelInfo

KINDS = ("savedmodel", "graphdef", "tflite")
DEFAULT_TIMEOUT = 300.0


def convert_in_child(kind: str, source: Path, *, input_node: str = "", output_node: str = "",
                     timeout: float = DEFAULT_TIMEOUT) -> tuple[bytes, ModelInfo]:
    """Convert/check ``source`` in a child process; returns (tflite bytes, info)."""
    if kind not in KINDS:
        raise Invalid(f"unknown model kind {kind!r}")
    with tempfile.TemporaryDirectory(prefix="smartcache-convert-") as tmp:
        out = Path(tmp) / "model.tflite"
        cmd = [sys.executable, "-m", "smartcache.inference.convert", kind, str(source), str(out),
               "--input-node", input_node, "--output-node", output_node]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise Invalid(f"model conversion took longer than {timeout:.0f} s") from e
        if proc.returncode == 2:
            raise Invalid(_last_line(proc.stderr) or "model refused")
        if proc.returncode != 0:
            # A crash (signal) on an uploaded file is the file's fault; anything else is ours.
            if proc.returncode < 0:
                raise Invalid(f"model crashed the converter (signal {-proc.returncode})")
            raise Unavailable(f"model converter failed: {_last_line(proc.stderr)}")
        try:
            info = ModelInfo(**json.loads(proc.stdout.strip().splitlines()[-1]))
            return out.read_bytes(), info
        except (ValueError, TypeError, IndexError, OSError) as e:
            raise Unavailable(f"model converter gave no result: {e}") from e


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


# -- the child ------------------------------------------------------------------------------
def _convert_savedmodel(path: Path) -> bytes:
    import tensorflow as tf
    try:
        loaded = tf.saved_model.load(str(path))
        sigs = list(loaded.signatures.keys())
    except Exception as e:  # noqa: BLE001 - TF raises many unrelated types for bad files
        raise Invalid(f"not a loadable SavedModel: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from e
    if not sigs:
        raise Invalid("SavedModel has no serving signature")
    sig = "serving_default" if "serving_default" in sigs else sigs[0]
    try:
        return bytes(tf.lite.TFLiteConverter.from_saved_model(str(path), signature_keys=[sig]).convert())
    except Exception as e:  # noqa: BLE001
        raise Invalid(f"cannot convert SavedModel to TFLite: {str(e).splitlines()[0][:200]}") from e


def _convert_graphdef(path: Path, input_node: str, output_node: str) -> bytes:
    if not input_node or not output_node:
        raise Invalid("a frozen graph needs inputNode and outputNode in params.json")
    import tensorflow as tf
    try:
        conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(path), input_arrays=[input_node.split(":")[0]], output_arrays=[output_node.split(":")[0]])
        return bytes(conv.convert())
    except Exception as e:  # noqa: BLE001
        raise Invalid(f"cannot convert frozen graph: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from e


def _child(args: argparse.Namespace) -> ModelInfo:
    from smartcache.inference.modelformat import is_tflite
    from smartcache.inference.runtime import Predictor
    src = Path(args.input)
    if args.kind == "savedmodel":
        tflite = _convert_savedmodel(src)
    elif args.kind == "graphdef":
        tflite = _convert_graphdef(src, args.input_node, args.output_node)
    else:
        tflite = src.read_bytes()
    if not is_tflite(tflite):
        raise Invalid("not a TFLite flatbuffer")
    pred = Predictor(tflite)
    _probe(pred)
    Path(args.output).write_bytes(tflite)
    return pred.info


def _probe(pred) -> None:
    """Run the model once on a row and on a batch: it must answer finite numbers."""
    import numpy as np
    for n in (1, 3):
        y = pred.predict(np.zeros((n, pred.info.n_inputs), np.float32))
        if y.shape != (n, pred.info.n_outputs) or not np.all(np.isfinite(y)):
            raise Invalid(f"model gives no finite [{n}, k] output on a probe input")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--input-node", default="")
    ap.add_argument("--output-node", default="")
    args = ap.parse_args(argv)
    try:
        info = _child(args)
    except SmartcacheError as e:
        print(str(e).replace("\n", " "), file=sys.stderr)
        return 2
    print(json.dumps(asdict(info)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
