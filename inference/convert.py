"""Convert and check uploaded models in a sandboxed child process.

An uploaded model is untrusted twice over: TensorFlow's loaders run the uploader's graph
(a TF1 ``main_op``, a TF2 resource initializer), and they and the TFLite runtime are large
C++ code bases that a crafted file can crash. So conversion (SavedModel or TF1 frozen graph
to TFLite, checked against the original, see :mod:`smartcache.inference.tfconvert`) and the
first load of any uploaded TFLite model run in a child process inside a bubblewrap sandbox
(:mod:`smartcache.inference.sandbox`) with rlimits and a timeout; the serving process only
loads the result after the child said it is sound. It also keeps TensorFlow (seconds to
import, a GB of memory) out of the serving workers.

The child is ``python -m smartcache.inference.convert KIND INPUT OUTPUT [--input-node N
--output-node N]``; it prints a JSON result on success and exits 2 with one line on stderr
for a bad model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartcache.catalog.errors import Invalid, SmartcacheError, Unavailable
from smartcache.inference.runtime import ModelInfo, describe
from smartcache.inference.sandbox import Sandbox
from smartcache.inference.tfconvert import TOLERANCE

KINDS = ("savedmodel", "graphdef", "tflite")
DEFAULT_TIMEOUT = 300.0
_OUTPUT = "model.tflite"


@dataclass(frozen=True)
class Conversion:
    """A checked TFLite model and how it was obtained (``max_abs_diff`` None: uploaded as TFLite)."""

    tflite: bytes
    info: ModelInfo
    method: str
    max_abs_diff: float | None
    probe_rows: int
    sandbox: str

    def record(self) -> dict[str, Any]:
        """What the catalog keeps with the model version (record params ``conversion``)."""
        return {"method": self.method, "max_abs_diff": self.max_abs_diff, "probe_rows": self.probe_rows,
                "sandbox": self.sandbox}


def convert_in_child(kind: str, source: Path, *, input_node: str = "", output_node: str = "",
                     timeout: float = DEFAULT_TIMEOUT, sandbox: Sandbox = Sandbox()) -> Conversion:
    """Convert/check ``source`` (a SavedModel folder or a model file) in a sandboxed child."""
    if kind not in KINDS:
        raise Invalid(f"unknown model kind {kind!r}")
    source = source.resolve()
    with tempfile.TemporaryDirectory(prefix="smartcache-convert-") as tmp:
        in_dir, out_dir = Path(tmp) / "in", Path(tmp) / "out"
        out_dir.mkdir()
        if source.is_dir():
            in_dir = source
            name = "."
        else:   # a single file: give the box a folder holding only it
            in_dir.mkdir()
            name = "model"
            shutil.copyfile(source, in_dir / name)
        size = sum(p.stat().st_size for p in in_dir.rglob("*") if p.is_file())

        def argv(inside: str, outside: str) -> list[str]:
            return [sys.executable, "-I", "-m", "smartcache.inference.convert", kind, f"{inside}/{name}",
                    f"{outside}/{_OUTPUT}", "--input-node", input_node, "--output-node", output_node]

        cmd, env = sandbox.command(argv, in_dir, out_dir, sandbox.limits.for_input(size, timeout))
        result = _run(cmd, env, timeout)
        try:
            tflite = (out_dir / _OUTPUT).read_bytes()
            diff = result["max_abs_diff"]
            conv = Conversion(tflite, describe(tflite), str(result["method"])[:64],
                              None if diff is None else float(diff), int(result["probe_rows"]), sandbox.describe())
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise Unavailable(f"model converter gave no result: {e}") from e
    if conv.max_abs_diff is not None and not conv.max_abs_diff <= TOLERANCE:
        raise Invalid(f"converted model differs from the original by up to {conv.max_abs_diff:.3g}")
    return conv


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    # keep only the ends of what the child prints: a hostile model may print without end
    out, err = _Tail(proc.stdout), _Tail(proc.stderr)
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        proc.kill()       # bwrap: --die-with-parent takes the whole box down with it
        proc.wait()
        raise Invalid(f"model conversion took longer than {timeout:.0f} s") from e
    finally:
        out.join()
        err.join()
    if returncode == 2:
        raise Invalid(_last_line(err.text()) or "model refused")
    if returncode != 0:
        # A crash or an rlimit (signal, or bwrap reporting the child's death) is the file's fault.
        if returncode < 0 or returncode > 128:
            sig = -returncode if returncode < 0 else returncode - 128
            raise Invalid(f"model crashed the converter or exceeded its limits (signal {sig})")
        raise Unavailable(f"model converter failed: {_last_line(err.text())}")
    try:
        return json.loads(out.text().strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise Unavailable(f"model converter gave no result: {e}") from e


class _Tail(threading.Thread):
    """Reads a pipe to its end, keeping the last ``keep`` bytes."""

    def __init__(self, pipe, keep: int = 64 << 10):
        super().__init__(daemon=True)
        self.pipe, self.keep, self.data = pipe, keep, b""
        self.start()

    def run(self) -> None:
        with self.pipe:
            while chunk := self.pipe.read1(1 << 16):
                self.data = (self.data + chunk)[-self.keep:]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


# -- the child ------------------------------------------------------------------------------
def _child(args: argparse.Namespace) -> dict[str, Any]:
    from smartcache.inference.modelformat import is_tflite
    from smartcache.inference.runtime import Predictor
    src = Path(args.input)
    if args.kind == "tflite":
        tflite, method, diff, rows = src.read_bytes(), "uploaded", None, 0
    else:
        from smartcache.inference import tfconvert
        if args.kind == "savedmodel":
            conv = tfconvert.convert_savedmodel(src)
        else:
            conv = tfconvert.convert_graphdef(src, args.input_node, args.output_node)
        tflite, method, diff, rows = conv.tflite, conv.method, conv.max_abs_diff, conv.probe_rows
    if not is_tflite(tflite):
        raise Invalid("not a TFLite flatbuffer")
    pred = Predictor(tflite)
    _probe(pred)
    Path(args.output).write_bytes(tflite)
    return {"method": method, "max_abs_diff": diff, "probe_rows": rows}


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
        result = _child(args)
    except SmartcacheError as e:
        print(str(e).replace("\n", " "), file=sys.stderr)
        return 2
    except MemoryError:
        print("the model needs more memory than a conversion may use", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
