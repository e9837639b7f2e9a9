"""``COPY --parents`` sources that need a pattern walk: ``**``, or wildcards before the
``/./`` pivot.

BuildKit (dockerfile2llb/convert_copy.go dispatchCopy) splits a ``--parents`` source at
``/./``: the part before it (the whole context when there is no pivot) is resolved with
wildcards, and the part after it becomes an include pattern (moby patternmatcher, so
``**`` spans any number of directories, none included) matched below each base. Every
match keeps its path below the base.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from builder.frontend.dockerignore import PatternMatcher
from builder.plan.paths import clean

if TYPE_CHECKING:
    from builder.ops.context import BuildContext


def _has_wildcard(text: str) -> bool:
    return any(c in text for c in "*?[")


def parents_matches(
    context: BuildContext, source: str, excludes: Sequence[str]
) -> list[tuple[str, str]] | None:
    """``(context path, path kept below the base)`` for each top-most match, or None
    when ``source`` is a plain path or a simple wildcard (the usual resolution)."""
    parent, sep, pattern = source.partition("/./")
    if not sep:
        parent, pattern = "", source
    if "**" not in pattern and not _has_wildcard(parent):
        return None
    pattern = clean("/" + pattern).lstrip("/")
    bases = context.resolve_sources(parent or ".", excludes=excludes)
    matcher = PatternMatcher([pattern])
    out: list[tuple[str, str]] = []
    for base in bases:
        taken: list[str] = []
        for entry in context.walk(base, excludes=excludes):
            below = entry.rel[len(base) :].lstrip("/") if base else entry.rel
            if not below or any(below.startswith(t + "/") for t in taken):
                continue
            if matcher.matches(below):
                taken.append(below)
                out.append((entry.rel, below))
    return out
