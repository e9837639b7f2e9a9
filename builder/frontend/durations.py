"""Durations as Go's time.ParseDuration reads them (docker's HEALTHCHECK flags).

``1m30s``, ``.5s``, ``-2h``, ``0``: signed sequences of decimal numbers, each with a
unit (ns, us or µs, ms, s, m, h), to whole nanoseconds in Go's int64 range. ``extra``
units extend the set (``pybuild cache`` takes days and weeks). Malformed text is a
ValueError with Go's message; each caller turns it into its own error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

UNITS_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
UNITS_NS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
MAX_NS = 2**63 - 1  # time.Duration is an int64 of nanoseconds
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]+)")


def parse_duration_ns(text: str, extra: Mapping[str, int] | None = None) -> int:
    """Go's time.ParseDuration of ``text``, in nanoseconds; ValueError when malformed
    (a number without digits, a missing or unknown unit) or beyond int64."""
    invalid = ValueError(f'time: invalid duration "{text}"')
    units = UNITS_NS | dict(extra or {})
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if text[:1] in ("-", "+") else text
    if body == "0":
        return 0
    parts = _PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise invalid
    total = Decimal(0)
    for number, unit in parts:
        if number in ("", ".") or unit not in units:
            raise invalid
        total += Decimal(number) * units[unit]
    ns = sign * int(total)
    if not -(2**63) <= ns <= MAX_NS:
        raise invalid
    return ns
