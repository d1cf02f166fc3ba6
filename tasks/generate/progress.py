"""Progress of a long generation: a tqdm bar on a terminal, else a line every half minute.

A 10 GB-class run takes many minutes in batch jobs and logs, where a bar is noise but silence is
worse: the line says days done, records and bytes written, the rate and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Count finished days (and their part rows); ``enabled`` False says nothing."""

    def __init__(self, days: int, enabled: bool, stream: TextIO | None = None, every_s: float = 30.0):
        self.days, self.stream, self.every_s = days, stream or sys.stderr, every_s
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.done_days = self.records = self.bytes = 0
        self.t0 = self.last = time.monotonic()
        self.bar = None

    def __enter__(self) -> "Progress":
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=self.days, unit="day", desc="generate", file=self.stream)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done_days and exc[0] is None:
            self._line()

    def done(self, rows: list[dict]) -> list[dict]:
        """One day finished with these part rows; returns them."""
        self.done_days += 1
        self.records += sum(r["records"] for r in rows)
        self.bytes += sum(r["bytes"] for r in rows)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.records / 1e6:.1f}M rec, {self.bytes / 2**30:.2f} GiB", refresh=False)
            self.bar.update()
        elif self.enabled and time.monotonic() - self.last >= self.every_s and self.done_days < self.days:
            self._line()
        return rows

    def _line(self) -> None:
        now = time.monotonic()
        self.last = now
        el = now - self.t0
        left = el * (self.days - self.done_days) / self.done_days
        print(f"generate: {self.done_days}/{self.days} days, {self.records:,} records, "
              f"{self.bytes / 2**30:.2f} GiB, {self.records / max(el, 1e-9):,.0f} rec/s, "
              f"{el:.0f} s elapsed, ~{left:.0f} s left", file=self.stream, flush=True)
