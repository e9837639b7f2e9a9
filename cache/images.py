"""Images in the blob store: a manifest, its config and its layers, all by digest.

An image is stored as three kinds of blobs (config JSON, manifest JSON, layer tars);
its identity is the manifest digest. Tags live in ``cache.index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cache.digest import Digest
from cache.errors import InvalidImage
from cache.oci import (
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Manifest,
    Pairs,
)
from cache.store import BlobStore


@dataclass(frozen=True)
class StoredImage:
    """An image read back from the store; ``digest`` is its manifest's digest."""

    digest: Digest
    manifest: Manifest
    config: ImageConfig
    config_digest: Digest


def write_image(
    blobs: BlobStore,
    config: ImageConfig,
    layers: Sequence[Descriptor],
    annotations: Pairs = (),
) -> StoredImage:
    """Store config and manifest (layers must already be in the store); return the image.

    ``annotations`` go into the manifest (``--annotation``)."""
    if len(layers) != len(config.diff_ids):
        raise InvalidImage(
            f"image has {len(layers)} layers but its config lists {len(config.diff_ids)} diff_ids"
        )
    config_bytes = config.to_bytes()
    config_digest = blobs.put_bytes(config_bytes)
    manifest = Manifest(
        config=Descriptor(MEDIA_OCI_CONFIG, config_digest, len(config_bytes)),
        layers=tuple(layers),
        annotations=tuple(sorted(annotations)),
    )
    manifest_digest = blobs.put_bytes(manifest.to_bytes())
    return StoredImage(manifest_digest, manifest, config, config_digest)


def read_image(blobs: BlobStore, manifest_digest: Digest) -> StoredImage:
    """Read and verify an image's manifest and config from the store."""
    manifest = Manifest.from_bytes(blobs.read_bytes(manifest_digest))
    if manifest.media_type not in (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST):
        raise InvalidImage(f"{manifest_digest} is not an image manifest")
    config = ImageConfig.from_bytes(blobs.read_bytes(manifest.config.digest))
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidImage(
            f"image {manifest_digest}: {len(manifest.layers)} layers but "
            f"{len(config.diff_ids)} diff_ids in its config"
        )
    return StoredImage(manifest_digest, manifest, config, manifest.config.digest)
