"""'did you mean' as BuildKit's util/suggest: within edit distance 2, none for a match."""

from __future__ import annotations

from builder.frontend.suggest import closest, did_you_mean, distance


def test_distance_counts_single_character_edits() -> None:
    assert distance("tpmfs", "tmpfs") == 2
    assert distance("tagret", "target") == 2
    assert distance("", "abc") == 3


def test_closest_option_within_two_edits_or_none() -> None:
    assert closest("tpmfs", ["bind", "cache", "tmpfs"]) == "tmpfs"
    assert closest("xyzzy", ["bind", "cache", "tmpfs"]) is None
    assert closest("bind", ["bind", "bin"]) is None  # valid value: nothing to suggest
    assert did_you_mean("biuld", ["build"]) == " (did you mean build?)"
