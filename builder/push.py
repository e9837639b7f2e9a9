"""``pybuild push NAME[:TAG]``: a stored image to a registry.

Blobs first (each checked with HEAD, uploaded only when missing), the manifest last, so
the tag never points at an incomplete image. A push that broke off half-way is simply
run again: the blobs that arrived are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.pull import PullEvents, RemoteOptions, credentials_for
from cache.digest import Digest
from cache.errors import CacheError
from cache.images import StoredImage, read_image
from cache.index import Index as TagIndex
from cache.refs import Reference, parse_reference
from cache.registry import RegistryClient
from cache.store import BlobStore

_SAID = {
    "exists": "Layer already exists",
    "mounted": "Mounted from {source}",
    "pushed": "Pushed ({size} bytes)",
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
) -> PushResult:
    """Upload ``image`` as ``target`` (a docker-style reference with a tag or digest).

    With ``tags``, blobs that other local images from the same registry hold are
    mounted from their repository instead of uploaded (when the registry allows it).
    """
    emit = events or (lambda _msg: None)
    ref = parse_reference(target)
    manifest_bytes = blobs.read_bytes(image.digest)
    sources = mount_sources(ref, blobs, tags) if tags is not None else {}
    uploaded = 0
    with RegistryClient(
        ref, credentials=credentials_for(options, ref), options=options.registry, push=True
    ) as client:
        for desc in (*image.manifest.layers, image.manifest.config):
            source = sources.get(desc.digest)
            outcome = client.push_blob(desc, blobs, mount_from=source)
            uploaded += outcome == "pushed"
            emit(f"{desc.digest.short}: {_SAID[outcome].format(size=desc.size, source=source)}")
        digest = client.put_manifest(
            ref.object if ref.tag is None else ref.tag,
            manifest_bytes,
            image.manifest.media_type,
        )
    return PushResult(ref, digest, len(manifest_bytes), uploaded)


def mount_sources(ref: Reference, blobs: BlobStore, tags: TagIndex) -> dict[Digest, str]:
    """Blob digest -> another repository on ``ref``'s registry that a local tag says has it."""
    sources: dict[Digest, str] = {}
    for name, digest in tags.tags():
        try:
            other = parse_reference(name)
            image = read_image(blobs, digest)
        except CacheError:
            continue  # a local-only name, or a damaged image: no mount from it
        if other.registry != ref.registry or other.repository == ref.repository:
            continue
        for desc in (*image.manifest.layers, image.manifest.config):
            sources.setdefault(desc.digest, other.repository)
    return sources
