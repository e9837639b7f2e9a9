"""Images in the blob store: a manifest, its config and its layers, all by digest.

An image is stored as three kinds of blobs (config JSON, manifest JSON, layer tars);
its identity is the manifest digest. A multi-platform image is an image index over
several such manifests, each with its ``platform``; a tag may name either, and
``read_for_platform`` picks one image from an index. Tags live in ``cache.index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cache.digest import Digest
from cache.errors import InvalidImage, PlatformNotFound
from cache.oci import (
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Pairs,
    Platform,
    host_platform,
    is_attestation,
    load_json,
    select_platform,
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


def is_index(blobs: BlobStore, digest: Digest) -> bool:
    """Whether the blob ``digest`` is an image index (OCI or docker manifest list)."""
    obj = load_json(blobs.read_bytes(digest), f"blob {digest}")
    media_type = obj.get("mediaType")
    return media_type in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST) or (
        media_type is None and "manifests" in obj
    )


def read_index(blobs: BlobStore, digest: Digest) -> Index:
    return Index.from_bytes(blobs.read_bytes(digest))


def read_images(blobs: BlobStore, digest: Digest) -> tuple[StoredImage, ...]:
    """The image ``digest`` names, or every image of the index it names (attestation
    manifests left out). An image the index lists but the store lacks is an error (a
    damaged index: ``cache verify`` reports its tag)."""
    if not is_index(blobs, digest):
        return (read_image(blobs, digest),)
    return tuple(
        read_image(blobs, d.digest)
        for d in read_index(blobs, digest).manifests
        if not is_attestation(d) and d.media_type in (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
    )


def index_platforms(index: Index) -> tuple[Platform, ...]:
    return tuple(d.platform for d in index.manifests if d.platform and not is_attestation(d))


def read_for_platform(
    blobs: BlobStore, digest: Digest, platform: Platform | None = None
) -> StoredImage:
    """The image ``digest`` names; from an index, the one for ``platform`` (default: this
    machine's). PlatformNotFound lists the platforms the index has."""
    if not is_index(blobs, digest):
        return read_image(blobs, digest)
    want = platform if platform is not None else host_platform()
    index = read_index(blobs, digest)
    candidates = [d for d in index.manifests if not is_attestation(d)]
    chosen = select_platform(candidates, want)
    if chosen is None or not blobs.has(chosen.digest):
        have = ", ".join(str(p) for p in index_platforms(index)) or "none"
        raise PlatformNotFound(
            f"image {digest} has no image for {want} (it has: {have})",
            hint="name one of its platforms with --platform",
        )
    return read_image(blobs, chosen.digest)


def write_index(
    blobs: BlobStore, images: Sequence[tuple[Platform, StoredImage]], annotations: Pairs = ()
) -> tuple[Digest, Index]:
    """Store an OCI image index over ``images`` (each with its platform), in that order."""
    index = Index(
        manifests=tuple(
            Descriptor(
                image.manifest.media_type,
                image.digest,
                blobs.size(image.digest),
                platform=platform,
            )
            for platform, image in images
        ),
        annotations=tuple(sorted(annotations)),
    )
    return blobs.put_bytes(index.to_bytes()), index
