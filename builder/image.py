"""The built image: config and manifest into the store, tags in the index."""

from __future__ import annotations

from collections.abc import Sequence

from builder.refs import normalize
from builder.solve import StageResult
from builder.storage import Storage
from cache.images import StoredImage, write_image


def commit_image(storage: Storage, result: StageResult, tags: Sequence[str]) -> StoredImage:
    """Write the target stage's config and manifest, then point every tag at it."""
    image = write_image(storage.blobs, result.config, result.layers)
    for tag in tags:
        storage.index.set_tag(normalize(tag), image.digest)
    return image
