"""Placement values from a next-read model: per (site, file), P(read again within the horizon | not since).

The model scored each file's latest request (features as of that read, see
:mod:`smartcache.tasks.features.online`); at the end of the window, ``elapsed`` seconds later, the file is
worth the probability that it is read again within ``horizon`` knowing it has not been read since -- the
value the learned cache kernel evicts by (:func:`smartcache.tasks.common.nextgap.value_now`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from smartcache.tasks.common.nextgap import cumulative, value_now
from smartcache.tasks.common.trace import Trace
from smartcache.tasks.features.online import trace_features

DEFAULT_HORIZON_S = 3 * 86400.0


@dataclass(frozen=True)
class Values:
    site: np.ndarray      # int32 index into trace.sites
    lfn: pa.Array
    size: np.ndarray      # int64 bytes
    value: np.ndarray     # float64


def file_values(trace: Trace, scorer, *, horizon_s: float = DEFAULT_HORIZON_S, now: float | None = None) -> Values:
    """One value per (site, file) of ``trace``, as of ``now`` (default: the last request's time)."""
    if len(trace) == 0:
        return Values(np.zeros(0, np.int32), pa.array([], pa.string()), np.zeros(0, np.int64), np.zeros(0))
    x = trace_features(trace)
    key = trace.obj * max(len(trace.sites), 1) + trace.site.astype(np.int64)
    # the last request of each (site, file): reverse so np.unique's first index is the latest
    rev = np.arange(len(trace))[::-1]
    _, first = np.unique(key[rev], return_index=True)
    last = np.sort(rev[first])
    cdf = cumulative(scorer.predict_all(x[last]))
    now = float(trace.ts[-1]) if now is None else now
    value = value_now(cdf, now - trace.ts[last], horizon_s, np.asarray(scorer.gap_edges, np.float64))
    return Values(trace.site[last], trace.lfns.take(pa.array(trace.obj[last])), trace.size[last], value)
