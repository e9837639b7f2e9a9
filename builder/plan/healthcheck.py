"""HEALTHCHECK: Go durations to nanoseconds, and the history text BuildKit writes.

BuildKit commits ``fmt.Sprintf("HEALTHCHECK %q", health)`` where ``health`` points to
docker's HealthConfig, so the history reads
``HEALTHCHECK &{["CMD-SHELL" "curl x"] "30s" "3s" "0s" "0s" '\\x03'}``: the test as a
quoted list, each duration through ``time.Duration.String`` and the retry count as a
quoted rune. The parser (``builder.frontend.convert``) has already checked the
flags' syntax; here they only become numbers.
"""

from __future__ import annotations

import json

from builder.errors import DockerfileError
from builder.frontend import durations
from builder.frontend import instructions as ins
from cache.oci import HealthConfig


def parse_duration_ns(value: str | None) -> int:
    """A Go duration (``1m30s``, ``0``, ``.5s``) in nanoseconds; None or "" is 0.

    Raises DockerfileError (no location) when ``value`` is not a duration (the parser
    has refused those already, so only a hand-made instruction gets here).
    """
    if not value:
        return 0
    try:
        return durations.parse_duration_ns(value)
    except ValueError as err:
        raise DockerfileError(str(err), hint="write 30s, 1m30s, 500ms") from None


def go_duration(ns: int) -> str:
    """``time.Duration(ns).String()``: ``0s``, ``1.5s``, ``5m0s``, ``1h0m0s``, ``100ms``."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _fraction(rest, 10**9) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + str(frac).rjust(digits, "0").rstrip("0")


def go_quote_rune(value: int) -> str:
    """Go's ``%q`` of an int: the rune quoted, ``'\\x03'`` for 3, ``'A'`` for 65."""
    named = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}
    if value in named:
        return f"'{named[value]}'"
    if value in (0x27, 0x5C):
        return "'\\" + chr(value) + "'"
    if 0 <= value < 0x110000 and chr(value).isprintable():
        return f"'{chr(value)}'"
    if value < 0x80:
        return f"'\\x{value:02x}'"
    if value < 0x10000:
        return f"'\\u{value:04x}'"
    return f"'\\U{value:08x}'"


def health_config(instr: ins.Healthcheck) -> HealthConfig:
    """The image config's Healthcheck for one HEALTHCHECK instruction (NONE included)."""
    if instr.test is None:
        return HealthConfig(test=("NONE",))
    return HealthConfig(
        test=instr.test,
        interval_ns=parse_duration_ns(instr.interval),
        timeout_ns=parse_duration_ns(instr.timeout),
        start_period_ns=parse_duration_ns(instr.start_period),
        start_interval_ns=parse_duration_ns(instr.start_interval),
        retries=int(instr.retries or 0),
    )


def history_text(health: HealthConfig) -> str:
    """BuildKit's history ``created_by`` for a HEALTHCHECK."""
    test = "[" + " ".join(json.dumps(t, ensure_ascii=False) for t in health.test) + "]"
    durations = " ".join(
        f'"{go_duration(ns)}"'
        for ns in (
            health.interval_ns,
            health.timeout_ns,
            health.start_period_ns,
            health.start_interval_ns,
        )
    )
    return f"HEALTHCHECK &{{{test} {durations} {go_quote_rune(health.retries)}}}"
