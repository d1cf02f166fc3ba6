"""A next-read model's Keras weights as a safe artifact: an ``.npz`` of plain arrays, read without pickle.

Kept beside the serving forms (artifact kind ``weights``) so that continued training can start from the
production model (:mod:`.continued`): the dense layers' weights in ``model.get_weights()`` order
(``w000``, ``w001``, ...), the normalisation the graph was built with (``norm_mean``, ``norm_variance``:
constants of the graph, not weights), and a JSON header (``meta``, as bytes) naming the format, the
hidden layer widths, the feature set and the input features. :func:`from_npz` refuses anything else.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from smartcache.catalog.errors import Invalid

ART_WEIGHTS = "weights"
FORMAT = "smartcache-nextgap-weights-v1"


@dataclass(frozen=True)
class Weights:
    meta: dict
    mean: np.ndarray          # float32 [n_features]
    variance: np.ndarray      # float32 [n_features]
    weights: tuple[np.ndarray, ...]

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(int(h) for h in self.meta["hidden"])

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.meta["features"])


def to_npz(model: Any, *, hidden: Sequence[int], feature_set: str, features: Sequence[str]) -> bytes:
    """The model's weights and normalisation as npz bytes (see the module doc)."""
    norm = model.get_layer("normalization")
    arrays = {"norm_mean": np.asarray(norm.mean, np.float32).reshape(-1),
              "norm_variance": np.asarray(norm.variance, np.float32).reshape(-1)}
    weights = model.get_weights()
    arrays.update({f"w{i:03d}": np.asarray(w) for i, w in enumerate(weights)})
    meta = {"format": FORMAT, "hidden": [int(h) for h in hidden], "feature_set": feature_set,
            "features": list(features), "n_weights": len(weights)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def from_npz(data: bytes, what: str = "weights") -> Weights:
    """Read :func:`to_npz`'s bytes (never unpickling anything); a clear error for anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise Invalid(f"{what}: not a weights artifact: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise Invalid(f"{what}: unknown weights format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    n = int(meta.get("n_weights", -1))
    names = [f"w{i:03d}" for i in range(n)]
    if n < 2 or any(k not in arrays for k in (*names, "norm_mean", "norm_variance")):
        raise Invalid(f"{what}: incomplete weights artifact")
    mean, var = arrays["norm_mean"].astype(np.float32), arrays["norm_variance"].astype(np.float32)
    if mean.shape != var.shape or mean.shape[0] != len(meta.get("features", ())):
        raise Invalid(f"{what}: normalisation of {mean.shape} does not match {len(meta.get('features', ()))} features")
    return Weights(meta, mean, var, tuple(arrays[k] for k in names))
