"""Multi-platform images in the store: an index over per-platform images, picked by
platform, walked whole, refused when it lists an image the store lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cache.digest import Digest
from cache.errors import BlobNotFound, PlatformNotFound
from cache.images import StoredImage, read_for_platform, read_images, write_image, write_index
from cache.oci import ImageConfig, Platform
from cache.store import BlobStore

AMD64 = Platform("linux", "amd64", "")
ARM64 = Platform("linux", "arm64", "")


def _index(tmp_path: Path) -> tuple[BlobStore, Digest, list[StoredImage]]:
    blobs = BlobStore(tmp_path / "store")
    images = [
        write_image(blobs, ImageConfig(architecture=p.architecture, os=p.os), [])
        for p in (AMD64, ARM64)
    ]
    digest, _ = write_index(blobs, list(zip((AMD64, ARM64), images, strict=True)))
    return blobs, digest, images


def test_index_gives_the_image_for_each_platform_and_lists_them_when_missing(
    tmp_path: Path,
) -> None:
    blobs, digest, images = _index(tmp_path)
    assert read_for_platform(blobs, digest, ARM64) == images[1]
    assert read_for_platform(blobs, digest, AMD64) == images[0]
    assert read_for_platform(blobs, images[1].digest, AMD64) == images[1]
    with pytest.raises(PlatformNotFound, match=r"it has: linux/amd64, linux/arm64"):
        read_for_platform(blobs, digest, Platform("linux", "s390x", ""))


def test_read_images_walks_an_index_and_refuses_one_with_an_image_missing(
    tmp_path: Path,
) -> None:
    blobs, digest, images = _index(tmp_path)
    assert read_images(blobs, digest) == tuple(images)
    blobs.path(images[1].digest).unlink()
    with pytest.raises(BlobNotFound):
        read_images(blobs, digest)
