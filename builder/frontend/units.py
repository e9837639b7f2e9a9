"""Sizes as docker reads them (github.com/docker/go-units, size.go).

``ram_in_bytes`` is go-units' RAMInBytes, behind docker's ``--memory`` and ``--shm-size``
(opts.MemBytes): powers of 1024, units b/k/m/g/t/p in any case, an optional ``b`` or
``ib`` after the unit, a fractional number, one space allowed before the unit.
``storage_bytes`` reads the same shape with SI units (FromHumanSize's powers of 1000),
except that an ``i`` (``Gi``, ``GiB``) asks for powers of 1024. Malformed text is a ValueError
carrying go-units' message (SizeOutOfRange beyond go-units' int64); each flag turns it
into its own error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
# strconv.ParseFloat's decimal form (hex floats, underscores, inf and nan are not sizes).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MAX_SIZE = 2**63 - 1  # go-units returns an int64


class SizeOutOfRange(ValueError):
    """A well-formed size beyond int64 (or beyond a float64, as strconv says)."""


def ram_in_bytes(text: str) -> int:
    """go-units' RAMInBytes: ``512m``, ``1.5GiB``, ``64 kb`` or bytes, in bytes."""
    return _parse_size(text, BINARY, ("", "b", "ib"))


def storage_bytes(text: str) -> int:
    """``500MB``, ``10GB`` (powers of 1000) or ``1GiB`` (powers of 1024), in bytes."""
    return _parse_size(text, DECIMAL, ("", "b", "i", "ib"))


def _parse_size(text: str, units: Mapping[str, int], tails: tuple[str, ...]) -> int:
    """go-units' parseSize: a number, then a unit letter and one of ``tails``; a tail
    with ``i`` (``KiB``) means powers of 1024."""
    number, space, suffix = text.partition(" ")
    if not space:
        digits = [i for i, c in enumerate(text) if c in "0123456789."]
        if not digits:
            raise ValueError(f"invalid size: '{text}'")
        number, suffix = text[: digits[-1] + 1], text[digits[-1] + 1 :]
    if not _NUMBER.fullmatch(number):
        raise ValueError(f'strconv.ParseFloat: parsing "{number}": invalid syntax')
    size = float(number)
    if not math.isfinite(size):
        raise SizeOutOfRange(f'strconv.ParseFloat: parsing "{number}": value out of range')
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    suffix = suffix.lower()
    factor = 1
    if suffix and suffix != "b":
        if suffix[0] not in units or suffix[1:] not in tails:
            raise ValueError(f"invalid suffix: '{suffix}'")
        factor = BINARY[suffix[0]] if suffix[1:2] == "i" else units[suffix[0]]
    if not size * factor < 2**63:
        raise SizeOutOfRange(f"size {text!r} is beyond {MAX_SIZE} bytes")
    return int(size * factor)
