"""Human-readable sizes: one parser and one printer, used by every command.

Decimal units (kB, MB, GB, TB, PB) are powers of 1000, as storage sites quote
cache sizes; binary units (KiB … PiB) are powers of 1024. A bare number is bytes.
"""

from __future__ import annotations

import re

from smartcache.catalog.errors import SmartcacheError

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")
_PRINT = [(10**15, "PB"), (10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB")]


class SizeError(SmartcacheError, ValueError):
    """A size string could not be parsed."""


def parse_size(text: str | int) -> int:
    """Parse ``"500TB"``, ``"1.5 TiB"``, ``"10GB"`` or ``"123"`` into bytes."""
    if isinstance(text, int):
        if text < 0:
            raise SizeError(f"size must not be negative: {text}")
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise SizeError(f"not a size: {text!r} (use e.g. 500TB, 1.5TiB, 10GB)")
    number, unit = m.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise SizeError(f"unknown size unit {unit!r} in {text!r} (use B, kB, MB, GB, TB, PB or KiB … PiB)")
    return int(round(float(number) * factor))


def format_size(n: int | float) -> str:
    """Print bytes in decimal units with at most three significant digits after the point."""
    n = int(n)
    sign = "-" if n < 0 else ""
    a = abs(n)
    for factor, unit in _PRINT:
        if a >= factor:
            value = a / factor
            text = f"{value:.3f}".rstrip("0").rstrip(".")
            return f"{sign}{text} {unit}"
    return f"{sign}{a} B"
