"""HEALTHCHECK durations and BuildKit's history text."""

from __future__ import annotations

import pytest

from builder.errors import DockerfileError
from builder.plan.healthcheck import go_duration, go_quote_rune, history_text, parse_duration_ns
from cache.oci import HealthConfig


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("30s", 30 * 10**9),
        ("1m30s", 90 * 10**9),
        (".5s", 5 * 10**8),
        ("1h", 3600 * 10**9),
    ],
)
def test_parse_duration_to_nanoseconds(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


def test_parse_duration_refuses_garbage() -> None:
    with pytest.raises(DockerfileError):
        parse_duration_ns("5x")


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1_500_000_000, "1.5s"),
        (300 * 10**9, "5m0s"),
        (3600 * 10**9, "1h0m0s"),
        (100_000_000, "100ms"),
        (1_000, "1µs"),
        (3_723_500_000_000, "1h2m3.5s"),
    ],
)
def test_go_duration_string(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_quote_rune_like_go() -> None:
    assert [go_quote_rune(v) for v in (0, 3, 10, 65, 39)] == [
        "'\\x00'",
        "'\\x03'",
        "'\\n'",
        "'A'",
        "'\\''",
    ]


def test_history_text_for_none() -> None:
    text = history_text(HealthConfig(test=("NONE",)))
    assert text == 'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}'
