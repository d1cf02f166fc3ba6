"""Which feedback a retraining uses: the catalog's ``feedback/<SITE>/<DAY>`` datasets of the last N days.

The inference service registers each day's folder of accesses as a catalog dataset of kind ``feedback``
(``inference/feedback.py``); the window is chosen from those rows, never from a guessed path, so the
trace it becomes has them as parents (lineage). Its last days are held out: the trainer never sees them
and the evaluation counts only them (:func:`held_out_day`, the same rule as
:func:`smartcache.tasks.train.trace.held_out_start` on the exported trace).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Sequence

from smartcache.catalog import Store
from smartcache.catalog.errors import Invalid, NotFound
from smartcache.tasks.common.io import local_path as _local_path
from smartcache.tasks.feedback.partitions import KIND

DEFAULT_DAYS = 28
DEFAULT_HOLDOUT = 0.2          # the last 20 % of the window's days (at least one) are held out
MIN_TRAIN_REQUESTS = 1000      # what the trainer needs before the held-out days (train.trace.MIN_ROWS)
_NAME = re.compile(rf"^{KIND}/(?P<site>[^/]+)/(?P<day>\d{{4}}-\d{{2}}-\d{{2}})$")


@dataclass(frozen=True)
class FeedbackDay:
    """One ``feedback/<SITE>/<DAY>`` dataset: where its parts are, and its rows if the catalog knows them."""
    name: str
    site: str
    day: date
    folder: Path
    rows: int | None


@dataclass(frozen=True)
class Window:
    """The feedback days a retraining exports: ``first``..``last``, held out from ``held_out_from`` on."""
    sites: tuple[str, ...]
    first: date
    last: date
    held_out_from: date
    days: tuple[FeedbackDay, ...]

    @property
    def datasets(self) -> list[str]:
        return [d.name for d in self.days]

    def rows(self, *, before_held_out: bool = False) -> int | None:
        """Requests the catalog counts in the window (or before its held-out days); None if unknown."""
        chosen = [d for d in self.days if not before_held_out or d.day < self.held_out_from]
        if any(d.rows is None for d in chosen):
            return None
        return sum(d.rows for d in chosen)

    def describe(self) -> dict:
        return {"sites": list(self.sites), "first": self.first.isoformat(), "last": self.last.isoformat(),
                "held_out_from": self.held_out_from.isoformat(), "feedback_days": len({d.day for d in self.days}),
                "datasets": len(self.days), "requests": self.rows()}


def local_path(uri: str) -> Path:
    """A feedback dataset's ``file://`` URI (or plain path) as a path."""
    return _local_path(uri, "feedback")


def feedback_days(store: Store, site: str | None = None) -> list[FeedbackDay]:
    """The catalog's feedback datasets (of one site), oldest first."""
    prefix = f"{KIND}/{site}/" if site else f"{KIND}/"
    out = []
    for ds in store.list_datasets(kind=KIND, prefix=prefix):
        m = _NAME.match(ds.name)
        if not m:
            continue          # not one of the service's day datasets
        rows = ds.n_rows if ds.n_rows is not None else ds.meta.get("rows")
        out.append(FeedbackDay(ds.name, m.group("site"), date.fromisoformat(m.group("day")), local_path(ds.uri),
                               None if rows is None else int(rows)))
    return sorted(out, key=lambda d: (d.day, d.site))


def held_out_day(days: Sequence[date], fraction: float = DEFAULT_HOLDOUT) -> date:
    """The first held-out day: the last ``fraction`` of the distinct ``days`` (at least one, never all)."""
    distinct = sorted(set(days))
    if len(distinct) < 2:
        raise Invalid(f"feedback on {len(distinct)} day(s) ({', '.join(d.isoformat() for d in distinct) or 'none'}): "
                      "at least 2 days are needed, some to train on and the last to hold out")
    if not 0 < fraction < 1:
        raise Invalid(f"the held-out fraction must be between 0 and 1, not {fraction}")
    n_val = min(max(1, math.ceil(len(distinct) * fraction)), len(distinct) - 1)
    return distinct[-n_val]


def choose_window(store: Store, *, site: str | None = None, days: int = DEFAULT_DAYS, end: date | None = None,
                  holdout: float = DEFAULT_HOLDOUT, min_requests: int = MIN_TRAIN_REQUESTS) -> Window:
    """The last ``days`` days of feedback (of ``site``, else of every site) up to ``end`` (default: the newest
    feedback day); a clear error when there is none or too little to train on and hold out."""
    if days < 2:
        raise Invalid(f"--days must be at least 2 (days to train on and a day to hold out), not {days}")
    who = f"site {site}" if site else "any site"
    found = feedback_days(store, site)
    if not found:
        raise NotFound(f"no feedback for {who} in the catalog: the inference service records it (datasets "
                       f"{KIND}/<site>/<day>) as /decide and POST /access see accesses")
    last = end or max(d.day for d in found)
    first = last - timedelta(days=days - 1)
    chosen = tuple(d for d in found if first <= d.day <= last)
    if not chosen:
        raise NotFound(f"no feedback for {who} between {first} and {last} (the catalog has "
                       f"{found[0].day}..{found[-1].day})")
    window = Window(tuple(sorted({d.site for d in chosen})), first, last,
                    held_out_day([d.day for d in chosen], holdout), chosen)
    before = window.rows(before_held_out=True)
    if before is not None and before < min_requests:
        raise Invalid(f"only {before} requests of feedback for {who} between {first} and {window.held_out_from} "
                      f"(before the held-out days): at least {min_requests} are needed to train; wait for more "
                      "feedback or widen --days")
    return window
