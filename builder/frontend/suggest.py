"""'did you mean' suggestions, as BuildKit's util/suggest: the closest option within an
edit distance of 2 (Levenshtein), none for an exact match."""

from __future__ import annotations

from collections.abc import Iterable


def distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions each cost 1."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def closest(value: str, options: Iterable[str]) -> str | None:
    """The option BuildKit would suggest for ``value`` (case-sensitive), or None."""
    match, best = None, 3
    for option in options:
        if option == value:
            return None  # the value is valid: the error is about something else
        dist = distance(value, option)
        if dist < best:
            match, best = option, dist
    return match


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """`` (did you mean X?)`` to append to a message, or ``""``."""
    match = closest(value, options)
    return f" (did you mean {match}?)" if match else ""
