"""CopyIgnoredFile: a COPY or ADD source from the build context that ``.dockerignore``
excludes, so the copy cannot see it.

As BuildKit (dockerfile2llb/validations.go validateCopySourcePath, called from
convert_copy.go dispatchCopy for every source that is not a URL or a git repository):

- the check runs only when ``.dockerignore`` has patterns and none of them is a ``!``
  exception (exceptions make a static answer unreliable: an excluded directory may
  hold a re-included file);
- each expanded source, cleaned as a path (``filepath.Clean``), wildcards and all, is
  matched against the patterns, itself or any of its parent directories;
- ``.`` and ``/`` (the context root) are reported only when a pattern excludes every
  entry of the root: ``*``, ``**`` or ``**/*``;
- ``COPY --from`` and heredoc sources are not from the context and are not checked.

The message is BuildKit's (linter/ruleset.go RuleCopyIgnoredFile).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from builder.errors import BuildError
from builder.frontend.checks.rules import Finding
from builder.frontend.dockerignore import PatternMatcher, clean_path

RULE = "CopyIgnoredFile"
_WHOLE_ROOT = frozenset({"*", "**", "**/*"})


@dataclass(frozen=True)
class ContextCopy:
    """The build-context sources of one COPY or ADD, expanded, at its Dockerfile line."""

    line: int
    add: bool
    sources: tuple[str, ...]


def copy_ignored_file(copies: Sequence[ContextCopy], patterns: Sequence[str]) -> list[Finding]:
    """A finding for each source ``patterns`` (the ``.dockerignore``'s) exclude."""
    if not patterns:
        return []
    try:
        matcher = PatternMatcher(patterns)
        matcher.validate()
    except BuildError:
        return []  # reading the context reports a broken .dockerignore, with its name
    if matcher.has_exclusions:
        return []
    root_ignored = any(p in _WHOLE_ROOT for p in matcher.patterns)
    found: list[Finding] = []
    for copy in copies:
        verb = "Add" if copy.add else "Copy"
        for source in copy.sources:
            path = clean_path(source)
            ignored = root_ignored if path in (".", "/") else matcher.matches(path)
            if ignored:
                quoted = json.dumps(path, ensure_ascii=False)  # Go's %q
                message = f"Attempting to {verb} file {quoted} that is excluded by .dockerignore"
                found.append(Finding(RULE, copy.line, message))
    return found
