"""Sizes as docker's go-units reads them and durations as Go's time.ParseDuration does."""

from __future__ import annotations

import pytest

from builder.frontend.durations import MAX_NS, parse_duration_ns
from builder.frontend.units import SizeOutOfRange, ram_in_bytes, storage_bytes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 2**20),
        ("512m", 512 * 2**20),
        ("2G", 2 * 2**30),
        ("1.5g", 3 * 2**29),
        ("10mb", 10 * 2**20),
        ("1KiB", 1024),
        ("64 kb", 64 * 1024),
        ("1p", 2**50),
        ("7b", 7),
        (".5k", 512),
    ],
)
def test_ram_sizes_are_powers_of_1024_in_any_case(text: str, size: int) -> None:
    assert ram_in_bytes(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid size"),
        ("lots", "invalid size"),
        ("-1m", "invalid size"),
        ("5x", "invalid suffix: 'x'"),
        ("1ki", "invalid suffix: 'ki'"),
        ("1bb", "invalid suffix: 'bb'"),
        (" 5m", "ParseFloat"),
        ("0x10", "ParseFloat"),
    ],
)
def test_malformed_sizes_are_refused_with_go_units_messages(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ram_in_bytes(text)


def test_sizes_beyond_int64_are_out_of_range() -> None:
    assert ram_in_bytes("7e18") == 7 * 10**18
    for text in ("1e19", "9" * 400, "9999999999999g"):
        with pytest.raises(SizeOutOfRange):
            ram_in_bytes(text)


def test_storage_sizes_are_si_unless_an_i_says_binary() -> None:
    assert storage_bytes("512MB") == 512 * 10**6
    assert storage_bytes("10 GB") == 10 * 10**9
    assert storage_bytes("1GiB") == storage_bytes("1gi") == 2**30
    assert storage_bytes("100") == 100


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("-0", 0),
        ("1m30s", 90 * 10**9),
        (".5s", 5 * 10**8),
        ("1.5µs", 1500),
        ("1.5μs", 1500),
        ("-2h", -7200 * 10**9),
        ("2562047h47m16.854775807s", MAX_NS),
        ("-2562047h47m16.854775808s", -(2**63)),
    ],
)
def test_durations_read_as_go_does(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(
    "text", ["", "5", "5x", "1h5", ".s", "--1s", "1s ", "1e3s", "2562047h47m16.854775808s"]
)
def test_malformed_or_int64_overflowing_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=f'time: invalid duration "{text}"'):
        parse_duration_ns(text)


def test_extra_units_extend_gos_set() -> None:
    assert parse_duration_ns("1d2h", {"d": 86400 * 10**9}) == 26 * 3600 * 10**9
    with pytest.raises(ValueError):
        parse_duration_ns("1d")
