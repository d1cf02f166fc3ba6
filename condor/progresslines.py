"""A run's progress as plain lines, for when stderr is a log rather than a terminal (no progress bar).

One line when nodes finish, and one every ``every`` seconds while none does, so that a log or a CI
job shows where a long run is::

    12:03:04 run-00001-pipeline: 5/32 done, 2 running, 0 failed; reduce-2026-05-03 done
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Mapping, Sequence, TextIO

HEARTBEAT_SECONDS = 30.0
MAX_NAMED = 3           # nodes named on one line; more are counted


class ProgressLines:
    def __init__(self, name: str, total: int, *, every: float = HEARTBEAT_SECONDS, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.name, self.total, self.every = name, total, every
        self.stream = stream
        self.clock = clock
        self._last = clock()

    def update(self, counts: Mapping[str, int], finished: Sequence[tuple[str, str]] = ()) -> bool:
        """Print a line if nodes ``finished`` ((node, status) pairs) or ``every`` seconds passed; True if printed."""
        if not finished and self.clock() - self._last < self.every:
            return False
        line = (f"{time.strftime('%H:%M:%S')} {self.name}: {counts.get('done', 0)}/{self.total} done, "
                f"{counts.get('running', 0)} running, {counts.get('failed', 0)} failed")
        if finished:
            named = ", ".join(f"{node} {status}" for node, status in finished[:MAX_NAMED])
            more = len(finished) - MAX_NAMED
            line += f"; {named}" + (f" and {more} more" if more > 0 else "")
        stream = self.stream or sys.stderr          # looked up late: tests and the CLI swap sys.stderr
        print(line, file=stream, flush=True)
        self._last = self.clock()
        return True
