"""Local image names: the familiar ``name:tag`` docker shows for an image in its store.

The grammar is cache.distribution.reference's (docker's distribution/reference); here a
malformed name is a usage error, and a digest is refused: a local name is a tag.
"""

from __future__ import annotations

from builder.errors import UsageError
from cache.distribution.errors import InvalidReference
from cache.distribution.reference import parse_reference


def normalize(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; ``docker.io/library/x:1`` -> ``x:1``.

    UsageError (with the grammar's message and hint) when ``ref`` is malformed or has a
    digest.
    """
    if "@" in ref:
        raise UsageError(
            f"image reference {ref!r}: digests are not supported for local names yet",
            hint="refer to the image by name:tag",
        )
    try:
        parsed = parse_reference(ref)
    except InvalidReference as err:
        raise UsageError(err.message, hint=err.hint) from None
    return f"{parsed.familiar_name}:{parsed.tag}"
