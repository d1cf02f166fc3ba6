"""Reading the feature table for training, the time split, and the validation metrics.

The feature table (``tasks/features``) has one row per (decision day, site, file): the model's input
columns (``FEATURE_COLUMNS``), a ``day`` and a binary ``label`` ("read again at this site within
``horizon`` days after ``day``"). Rows whose label window runs past the end of the data (or over a
missing day) are not labelled yet: they are dropped here (``label_complete`` false, null label, or
``day + horizon > last day``). Rows whose look-back windows start before the data
(``history_complete`` false) are dropped too when complete ones exist: their counts are truncated,
unlike those of every row the model will score later.

The split is by time, never shuffled across it: validation = the last ``val_fraction`` of the
labelled days; training = the days before, *purged* of the last ``horizon`` days before validation,
so that no training label looks into the validation period (max train day + horizon < first
validation day): a label of day d covers days d+1 .. d+horizon (a request's label, the ``horizon`` days
after its time, ends on day d+horizon too), and the validation days are the held-out days the cache
simulation counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Sequence

import numpy as np
import pyarrow as pa

from smartcache.catalog.errors import Invalid
from smartcache.tasks.features.table import DAY_COLUMN, day_numbers, feature_matrix, open_table

LABEL_COLUMN = "label"
LABEL_COMPLETE = "label_complete"       # false: the label window is cut by the end of the data or a gap
HISTORY_COMPLETE = "history_complete"   # false: the look-back windows start before the data do
EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class LabelledRows:
    x: np.ndarray          # float32 [n, F]
    y: np.ndarray          # int8 [n]
    day: np.ndarray        # int32 day number (days since 1970-01-01)
    features: tuple[str, ...]
    last_day: int          # last day the table covers (labels are complete up to last_day - horizon)
    n_dropped: int         # rows dropped: label window or look-back history incomplete


@dataclass(frozen=True)
class Split:
    train: np.ndarray      # row indices, in time order
    val: np.ndarray
    train_days: tuple[int, int]
    val_days: tuple[int, int]
    purged_days: int

    def describe(self) -> dict:
        return {"train_days": [day_iso(d) for d in self.train_days],
                "val_days": [day_iso(d) for d in self.val_days], "purged_days": self.purged_days}


def day_iso(day_number: int) -> str:
    return (EPOCH + timedelta(days=int(day_number))).isoformat()


def load_labelled(uri: str, features: Sequence[str], horizon: int, last_day: int | None = None) -> LabelledRows:
    """Labelled rows of the feature table, in time order."""
    dataset = open_table(uri)
    names = dataset.schema.names
    for col in (DAY_COLUMN, LABEL_COLUMN):
        if col not in names:
            raise Invalid(f"feature table {uri} has no {col!r} column")
    flags = [c for c in (LABEL_COMPLETE, HISTORY_COMPLETE) if c in names]
    table = dataset.to_table(columns=list(dict.fromkeys([DAY_COLUMN, LABEL_COLUMN, *flags, *features])))
    if table.num_rows == 0:
        raise Invalid(f"feature table {uri} is empty")
    day = day_numbers(table.column(DAY_COLUMN))
    last = int(day.max()) if last_day is None else int(last_day)
    label = table.column(LABEL_COLUMN)
    keep = label.is_valid().to_numpy(zero_copy_only=False) & (day + horizon <= last)
    if LABEL_COMPLETE in flags:
        keep &= _flag(table, LABEL_COMPLETE)
    if HISTORY_COMPLETE in flags:
        full = _flag(table, HISTORY_COMPLETE)
        if (keep & full).any():
            keep &= full
    order = np.flatnonzero(keep)
    order = order[np.argsort(day[order], kind="stable")]
    kept = table.take(pa.array(order))
    y = kept.column(LABEL_COLUMN).cast(pa.int8()).to_numpy(zero_copy_only=False)
    return LabelledRows(feature_matrix(kept, features), y, day[order], tuple(features), last,
                        int(table.num_rows - len(order)))


def _flag(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def time_split(day: np.ndarray, horizon: int, val_fraction: float = 0.2) -> Split:
    """Train on earlier days, validate on the later ones, with a ``horizon``-day purge between."""
    if not 0.0 < val_fraction < 1.0:
        raise Invalid("val_fraction must be between 0 and 1")
    days = np.unique(day)
    n_val = max(1, int(round(len(days) * val_fraction)))
    if len(days) - n_val < 1:
        raise Invalid(f"only {len(days)} labelled day(s): need more to split training and validation")
    first_val = int(days[len(days) - n_val])
    last_train = first_val - horizon - 1   # a train label covers days d+1 .. d+horizon: all before first_val
    train = np.flatnonzero(day <= last_train)
    val = np.flatnonzero(day >= first_val)
    if len(train) == 0:
        raise Invalid(f"no training rows: {len(days)} labelled days leave none before the validation days "
                      f"once the {horizon}-day label horizon is purged (generate more days)")
    purged = int(np.count_nonzero((days > last_train) & (days < first_val)))
    return Split(train, val, (int(day[train].min()), int(day[train].max())),
                 (int(day[val].min()), int(day[val].max())), purged)


def subsample(index: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` rows, drawn uniformly with ``seed``, kept in time order."""
    if not limit or len(index) <= limit:
        return index
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(index, size=limit, replace=False))


# -- metrics --------------------------------------------------------------------------------------
def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    _, inv, counts = np.unique(np.asarray(s)[order], return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = avg_rank[inv]
    return float((ranks[y[order]].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``p`` (how well calibrated, not only ranked)."""
    y = np.asarray(y, np.float64)
    if len(y) == 0:
        return float("nan")
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def operating_point(y: np.ndarray, s: np.ndarray) -> dict:
    """The threshold of best Youden's J = recall - false-positive rate (positive when score >= threshold).

    Why not best F1: where most candidates are reused (e.g. 66 % of the files read today are read again
    within a week) F1 peaks at "admit everything", which makes an admission filter useless; J weighs
    both classes equally whatever the base rate.
    """
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return {"threshold": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0, "fpr": 0.0}
    order = np.argsort(-np.asarray(s, np.float64), kind="mergesort")
    s_sorted = np.asarray(s)[order]
    tp = np.cumsum(y[order])
    last_of_group = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    k = last_of_group + 1
    tp_k = tp[last_of_group]
    precision, recall, fpr = tp_k / k, tp_k / n_pos, (k - tp_k) / n_neg
    best = int(np.argmax(recall - fpr))
    p, r = float(precision[best]), float(recall[best])
    return {"threshold": float(s_sorted[last_of_group[best]]), "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0, "fpr": float(fpr[best])}
