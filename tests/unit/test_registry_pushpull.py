"""Pull and push helpers that need no registry: local names and mount sources."""

from __future__ import annotations

import tarfile
from io import BytesIO
from pathlib import Path

from builder.exporters.outputs import PushCompression, parse_output
from builder.exporters.push import mount_sources, wire_manifest
from builder.exporters.push_targets import push_plan
from builder.registry.pull import local_name
from cache.digest import Digest, sha256_bytes
from cache.distribution.reference import parse_reference
from cache.images import StoredImage, write_image
from cache.index import Index as TagIndex
from cache.layers import Compression, make_compressor
from cache.oci import (
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_ZSTD,
    Descriptor,
    ImageConfig,
    Manifest,
)
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


def _tar_layer(blobs: BlobStore, compression: Compression) -> tuple[Descriptor, Digest]:
    """A one-file layer stored in ``compression``: its descriptor and diff_id."""
    data = BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, BytesIO(b"hi\n"))
    raw = data.getvalue()
    compressor = make_compressor(compression)
    packed = compressor.compress(raw) + compressor.flush()
    digest = blobs.put_bytes(packed)
    return Descriptor(compression.media_type, digest, len(packed)), sha256_bytes(raw)


def _stored(blobs: BlobStore, *layers: Compression) -> StoredImage:
    made = [_tar_layer(blobs, c) for c in layers]
    config = ImageConfig(diff_ids=tuple(d for _, d in made))
    return write_image(blobs, config, [desc for desc, _ in made])


def test_push_sends_zstd_and_plain_layers_as_gzip_by_default(store_root: Path) -> None:
    blobs = BlobStore(store_root)
    image = _stored(blobs, Compression.ZSTD, Compression.NONE)
    manifest, data = wire_manifest(blobs, image, PushCompression())
    assert [d.media_type for d in manifest.layers] == [MEDIA_OCI_LAYER_GZIP] * 2
    assert blobs.read_bytes(manifest.layers[0].digest)[:2] == b"\x1f\x8b"
    assert manifest.config == image.manifest.config  # the image ID stays
    assert Manifest.from_bytes(data) == manifest


def test_push_keeps_the_stored_manifest_when_no_layer_needs_converting(store_root: Path) -> None:
    blobs = BlobStore(store_root)
    image = _stored(blobs, Compression.GZIP)
    _, data = wire_manifest(blobs, image, PushCompression())
    assert data == blobs.read_bytes(image.digest)
    zstd = _stored(blobs, Compression.ZSTD)
    _, kept = wire_manifest(blobs, zstd, PushCompression(Compression.ZSTD))
    assert kept == blobs.read_bytes(zstd.digest)


def test_force_compression_converts_every_layer(store_root: Path) -> None:
    blobs = BlobStore(store_root)
    image = _stored(blobs, Compression.GZIP, Compression.ZSTD)
    unforced, _ = wire_manifest(blobs, image, PushCompression(Compression.ZSTD))
    assert [d.media_type for d in unforced.layers] == [MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD]
    forced, _ = wire_manifest(blobs, image, PushCompression(Compression.ZSTD, force=True))
    assert [d.media_type for d in forced.layers] == [MEDIA_OCI_LAYER_ZSTD] * 2


def test_push_plan_gives_each_target_its_compression() -> None:
    tags = ("reg:5000/app:1",)
    plan = push_plan(True, [], tags)
    assert plan == (("reg:5000/app:1", PushCompression(Compression.GZIP, False)),)
    named = parse_output("type=registry,name=reg:5000/z:1,compression=zstd,force-compression=true")
    assert push_plan(False, [named], tags) == (
        ("reg:5000/z:1", PushCompression(Compression.ZSTD, True)),
    )
