"""``pybuild push NAME[:TAG]``: a stored image to a registry.

Blobs first (each checked with HEAD, uploaded only when missing), the manifest last, so
the tag never points at an incomplete image. A push that broke off half-way is simply
run again: the blobs that arrived are skipped.

Layers go out gzip by default, as BuildKit's image exporter sends them: docker before
23 fails on zstd layers ("unexpected EOF") and umoci 0.4.7 refuses them, while every
client reads gzip. The store keeps its own compression (zstd by default); a layer is
converted once per store (``cache.convert``). Every layer not in the target compression
is converted, except that under ``zstd`` a gzip layer is sent as it is (every zstd
reader reads gzip), as BuildKit keeps a gzip base; ``force`` converts those too
(BuildKit's ``force-compression=true``). An image with a converted layer goes out with
a new OCI manifest, so its registry digest differs from the stored one; its config, and
so its image ID, stays the same.

A multi-platform image (an index) goes out as each platform's image, each manifest put
by its digest, then the index under the tag; an image whose manifest changed on the
way (converted layers) is listed in the pushed index under its new digest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from builder.exporters.outputs import PushCompression
from builder.registry.pull import PullEvents, RemoteOptions, credentials_for
from cache.convert import convert_layer
from cache.digest import Digest, sha256_bytes
from cache.distribution.client import RegistryClient
from cache.distribution.reference import Reference, parse_reference
from cache.errors import CacheError
from cache.images import StoredImage, read_image, read_images, read_index
from cache.index import Index as TagIndex
from cache.layers import Compression
from cache.oci import (
    MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_ZSTD,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    is_attestation,
)
from cache.store import BlobStore

_SAID = {
    "exists": "Layer already exists",
    "mounted": "Mounted from {source}",
    "pushed": "Pushed ({size} bytes)",
}
_OCI_TYPE = {MEDIA_DOCKER_LAYER: MEDIA_OCI_LAYER, MEDIA_DOCKER_LAYER_GZIP: MEDIA_OCI_LAYER_GZIP}
# Without force, layers of these types are sent as they are (BuildKit keeps a gzip base
# layer under compression=zstd: every zstd reader reads gzip).
_GZIP = frozenset({MEDIA_OCI_LAYER_GZIP, MEDIA_DOCKER_LAYER_GZIP})
_KEEP = {
    Compression.GZIP: _GZIP,
    Compression.NONE: frozenset({MEDIA_OCI_LAYER, MEDIA_DOCKER_LAYER}),
    Compression.ZSTD: _GZIP | {MEDIA_OCI_LAYER_ZSTD},
}


@dataclass(frozen=True)
class PushResult:
    reference: Reference
    digest: Digest
    size: int  # of the manifest, as docker prints it
    uploaded: int  # blobs sent (the others were already on the registry)


def push_image(
    target: str,
    image: StoredImage,
    blobs: BlobStore,
    options: RemoteOptions,
    events: PullEvents | None = None,
    tags: TagIndex | None = None,
    compression: PushCompression | None = None,
    index: Digest | None = None,
) -> PushResult:
    """Upload ``image`` as ``target`` (a docker-style reference with a tag or digest);
    with ``index`` (a multi-platform image in ``blobs``), that index and every image in
    it instead.

    Layers go out as ``compression`` says (default: gzip; module docstring). With
    ``tags``, blobs that other local images from the same registry hold are mounted from
    their repository instead of uploaded (when the registry allows it).
    """
    emit = events or (lambda _msg: None)
    ref = parse_reference(target)
    wire = compression or PushCompression()
    sources = mount_sources(ref, blobs, tags) if tags is not None else {}
    reference = ref.object if ref.tag is None else ref.tag
    with RegistryClient(
        ref, credentials=credentials_for(options, ref), options=options.registry, push=True
    ) as client:
        if index is None:
            manifest, manifest_bytes = wire_manifest(blobs, image, wire)
            uploaded = _push_blobs(client, manifest, blobs, sources, emit)
            digest = client.put_manifest(reference, manifest_bytes, manifest.media_type)
            return PushResult(ref, digest, len(manifest_bytes), uploaded)
        uploaded, descriptors = 0, []
        stored = read_index(blobs, index)
        for desc in stored.manifests:
            if is_attestation(desc) or not blobs.has(desc.digest):
                continue
            manifest, manifest_bytes = wire_manifest(blobs, read_image(blobs, desc.digest), wire)
            uploaded += _push_blobs(client, manifest, blobs, sources, emit)
            pushed = sha256_bytes(manifest_bytes)
            client.put_manifest(str(pushed), manifest_bytes, manifest.media_type)
            size = len(manifest_bytes)
            descriptors.append(
                replace(desc, media_type=manifest.media_type, digest=pushed, size=size)
            )
        data = Index(tuple(descriptors), stored.annotations).to_bytes()
        digest = client.put_manifest(reference, data, MEDIA_OCI_INDEX)
    return PushResult(ref, digest, len(data), uploaded)


def _push_blobs(
    client: RegistryClient,
    manifest: Manifest,
    blobs: BlobStore,
    sources: dict[Digest, str],
    emit: PullEvents,
) -> int:
    """Push the manifest's layers and config; how many were uploaded."""
    uploaded = 0
    for desc in (*manifest.layers, manifest.config):
        source = sources.get(desc.digest)
        outcome = client.push_blob(desc, blobs, mount_from=source)
        uploaded += outcome == "pushed"
        emit(f"{desc.digest.short}: {_SAID[outcome].format(size=desc.size, source=source)}")
    return uploaded


def wire_manifest(
    blobs: BlobStore, image: StoredImage, compression: PushCompression
) -> tuple[Manifest, bytes]:
    """The manifest to push: the stored one byte for byte when no layer needs converting,
    else an OCI manifest over the converted layers (in ``blobs`` on return)."""
    layers: list[Descriptor] = []
    for layer, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True):
        keep = not compression.force and layer.media_type in _KEEP[compression.target]
        layers.append(layer if keep else convert_layer(blobs, layer, diff_id, compression.target))
    if tuple(layers) == image.manifest.layers:
        return image.manifest, blobs.read_bytes(image.digest)
    # An OCI manifest with docker layer types is refused by umoci: same blobs, OCI types.
    oci = tuple(replace(d, media_type=_OCI_TYPE.get(d.media_type, d.media_type)) for d in layers)
    manifest = Manifest(image.manifest.config, oci, image.manifest.annotations, MEDIA_OCI_MANIFEST)
    return manifest, manifest.to_bytes()


def mount_sources(ref: Reference, blobs: BlobStore, tags: TagIndex) -> dict[Digest, str]:
    """Blob digest -> another repository on ``ref``'s registry that a local tag says has it."""
    sources: dict[Digest, str] = {}
    for name, digest in tags.tags():
        try:
            other = parse_reference(name)
            images = read_images(blobs, digest)
        except CacheError:
            continue  # a local-only name, or a damaged image: no mount from it
        if other.registry != ref.registry or other.repository == ref.repository:
            continue
        for image in images:
            for desc in (*image.manifest.layers, image.manifest.config):
                sources.setdefault(desc.digest, other.repository)
    return sources
