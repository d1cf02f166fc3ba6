"""The counted window of a replay: one definition for ``simulate --from`` and ``evaluate``.

ARCHITECTURE.md §5: a replay runs over the whole trace (so the caches are warm) and only the requests
from the window's first day (UTC midnight) on are counted; with no first day every request is counted
and the caches start empty. ``evaluate`` replays exactly the trace it writes (or is given) with the
held-out window's first day as that day, so ``smartcache simulate --trace <its trace.csv> --from <that
day>`` gives the same figures, row for row.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

import numpy as np

from smartcache.catalog.errors import SmartcacheError
from smartcache.tasks.common.trace import DAY, Trace

DEFINITION = ("the whole trace is replayed (warm caches); requests from the first counted day (00:00 UTC) "
              "to the end of the trace are counted")


def parse_day(text: str, option: str = "--from") -> date:
    """``YYYY-MM-DD`` -> a date (the counting starts at its 00:00 UTC); anything else is a clear error."""
    m = re.fullmatch(r"\s*(\d{4})-(\d{2})-(\d{2})\s*", text or "")
    if not m:
        raise SmartcacheError(f"{option}: not a day: {text!r} (use YYYY-MM-DD, a UTC day)")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as e:
        raise SmartcacheError(f"{option}: not a day: {text!r} ({e})") from e


def day_start(day: date) -> float:
    """Epoch seconds of ``day`` 00:00 UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


def day_of(ts: float) -> date:
    return datetime.fromtimestamp(float(ts) // DAY * DAY, tz=timezone.utc).date()


def describe(trace: Trace, count_from: float | None) -> dict:
    """What a replay of ``trace`` counts from ``count_from`` (epoch s, None = everything)."""
    n = len(trace)
    counted = n if count_from is None else int(np.count_nonzero(trace.ts >= count_from))
    return {"from": None if count_from is None else day_of(count_from).isoformat(),
            "first_request": day_of(trace.ts[0]).isoformat() if n else None,
            "last_request": day_of(trace.ts[-1]).isoformat() if n else None,
            "replayed": n, "counted": counted, "warm_up": n - counted, "definition": DEFINITION}


def check(window: dict, option: str = "--from") -> None:
    """A window that counts nothing is a user error, said before any replay."""
    if window["replayed"] and not window["counted"]:
        raise SmartcacheError(f"{option} {window['from']}: no requests on or after that day "
                              f"(the trace ends {window['last_request']})")


def sentence(window: dict) -> str:
    """One line for people: which requests the figures count."""
    if window["from"] is None:
        return (f"counted: all {window['replayed']:,} requests ({window['first_request']} .. "
                f"{window['last_request']}), caches starting empty")
    if window["warm_up"] == 0:
        return (f"counted: all {window['replayed']:,} requests from {window['from']} 00:00 UTC (the trace starts "
                f"{window['first_request']}, so the caches start empty)")
    return (f"counted: {window['counted']:,} of {window['replayed']:,} requests, from {window['from']} 00:00 UTC "
            f"to the end of the trace ({window['last_request']}); the {window['warm_up']:,} before only warm "
            "the caches")
