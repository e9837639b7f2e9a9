"""Pull and push helpers that need no registry: local names and mount sources."""

from __future__ import annotations

from pathlib import Path

from builder.pull import local_name
from builder.push import mount_sources
from cache.digest import Digest
from cache.images import write_image
from cache.index import Index as TagIndex
from cache.oci import MEDIA_OCI_LAYER, Descriptor, ImageConfig
from cache.refs import parse_reference
from cache.store import BlobStore


def test_pulled_tags_get_docker_s_short_local_names() -> None:
    assert local_name(parse_reference("busybox")) == "busybox:latest"
    assert local_name(parse_reference("docker.io/library/alpine:3")) == "alpine:3"
    assert local_name(parse_reference("user/app:1")) == "user/app:1"
    assert local_name(parse_reference("127.0.0.1:5000/a/b:c")) == "127.0.0.1:5000/a/b:c"
    assert local_name(parse_reference("busybox@sha256:" + "0" * 64)) == ""


def _image(blobs: BlobStore, content: bytes) -> tuple[Digest, Digest]:
    layer = blobs.put_bytes(content)
    config = ImageConfig(diff_ids=(layer,))
    image = write_image(blobs, config, [Descriptor(MEDIA_OCI_LAYER, layer, len(content))])
    return image.digest, layer


def test_mount_sources_are_other_repositories_on_the_same_registry(store_root: Path) -> None:
    blobs, tags = BlobStore(store_root), TagIndex(store_root)
    try:
        same_reg, layer = _image(blobs, b"base layer")
        other_reg, other_layer = _image(blobs, b"elsewhere")
        tags.set_tag("reg.example:5000/lib/base:1", same_reg)
        tags.set_tag("other.example/lib/x:1", other_reg)
        tags.set_tag("reg.example:5000/team/app:1", same_reg)
        sources = mount_sources(parse_reference("reg.example:5000/team/app:1"), blobs, tags)
    finally:
        tags.close()
    assert sources[layer] == "lib/base"
    assert other_layer not in sources
    assert "team/app" not in sources.values()
