"""``pybuild pull`` and FROM's fallback: an image from a registry into the local store.

Order matters for a store shared by many processes: config and layers first (each blob
verified as it streams in), the manifest blob next, the tag last. A pull that fails
half-way leaves only complete, verified blobs and no tag; running it again fetches
only what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

from builder.registry.options import RemoteOptions as RemoteOptions
from cache.digest import Digest
from cache.distribution.auth import Credentials, load_credentials
from cache.distribution.client import RegistryClient, RemoteManifest
from cache.distribution.reference import Reference, parse_reference
from cache.errors import InvalidImage
from cache.gclock import build_guard
from cache.images import StoredImage, read_image
from cache.index import Index as TagIndex
from cache.oci import (
    MEDIA_DOCKER_LIST,
    MEDIA_OCI_INDEX,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    is_attestation,
    select_platform,
)
from cache.store import BlobStore

PullEvents = Callable[[str], None]
_MAX_NESTING = 2
_INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)


@dataclass(frozen=True)
class PullResult:
    reference: Reference
    local_name: str  # the tag written to the store; "" for a pull by digest
    image: StoredImage
    fetched: int  # blobs downloaded (the others were already in the store)


def credentials_for(options: RemoteOptions, ref: Reference) -> Credentials | None:
    if options.docker_config is None:
        return None
    return load_credentials(options.docker_config, ref.registry)


def local_name(ref: Reference) -> str:
    """The name the store shows for a pulled tag, as docker does (``busybox:latest``)."""
    return f"{ref.familiar_name}:{ref.tag}" if ref.tag else ""


def pull_image(
    text: str,
    blobs: BlobStore,
    tags: TagIndex,
    options: RemoteOptions,
    events: PullEvents | None = None,
) -> PullResult:
    """Pull ``text`` (a docker-style reference) for ``options.platform``; tag it locally."""
    emit = events or (lambda _msg: None)
    ref = parse_reference(text)
    emit(f"Pulling {ref}")
    # Held until the tag is written: the blobs are unreferenced until then, and a
    # concurrent `cache prune` must not delete them (it waits for us instead).
    with (
        build_guard(blobs.root),
        RegistryClient(
            ref, credentials=credentials_for(options, ref), options=options.registry
        ) as client,
    ):
        chosen = _select(client, client.get_manifest(), options.platform, 0)
        manifest = Manifest.from_bytes(chosen.data)
        fetched = _fetch_image(client, manifest, blobs, options.jobs, emit)
        blobs.put_bytes(chosen.data)
        image = read_image(blobs, chosen.digest)
        name = local_name(ref) if ref.digest is None else ""
        if name:
            tags.set_tag(name, chosen.digest)
    emit(f"Digest: {chosen.digest}")
    return PullResult(ref, name, image, fetched)


def _select(
    client: RegistryClient, found: RemoteManifest, platform: Platform, depth: int
) -> RemoteManifest:
    """Follow indexes down to the image manifest for ``platform``."""
    if not _is_index(found):
        return found
    if depth >= _MAX_NESTING:
        raise InvalidImage(f"{client.ref}: image indexes nested more than {_MAX_NESTING} deep")
    candidates = [d for d in Index.from_bytes(found.data).manifests if not is_attestation(d)]
    chosen = select_platform(candidates, platform)
    if chosen is None:
        have = ", ".join(sorted({str(d.platform) for d in candidates if d.platform})) or "none"
        raise InvalidImage(
            f"{client.ref} has no image for {platform} (it has: {have})",
            hint="pull an image built for this platform",
        )
    return _select(client, client.get_manifest(str(chosen.digest)), platform, depth + 1)


def _is_index(found: RemoteManifest) -> bool:
    if found.media_type in _INDEX_TYPES:
        return True
    try:
        doc = json.loads(found.data)
    except ValueError:
        return False
    return isinstance(doc, dict) and (doc.get("mediaType") in _INDEX_TYPES or "manifests" in doc)


def _fetch_image(
    client: RegistryClient, manifest: Manifest, blobs: BlobStore, jobs: int, emit: PullEvents
) -> int:
    """Config first (to check it against the layers), then the layers concurrently.

    A blob the store has is checked, not trusted: one gone bad is downloaded again.
    """
    have = {d.digest for d in (manifest.config, *manifest.layers) if blobs.intact(d.digest)}
    missing = {d.digest for d in (manifest.config, *manifest.layers)} - have
    if manifest.config.digest not in have:
        client.fetch_blob(manifest.config, blobs)
    config = ImageConfig.from_bytes(blobs.read_bytes(manifest.config.digest))
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidImage(
            f"{client.ref}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"
        )
    for layer in manifest.layers:
        if layer.digest in have:
            emit(f"{layer.digest.short}: Already exists")
    todo = list({d.digest: d for d in manifest.layers if d.digest not in have}.values())
    _parallel(client, todo, blobs, max(1, jobs), emit)
    return len(missing)


def _parallel(
    client: RegistryClient,
    layers: list[Descriptor],
    blobs: BlobStore,
    jobs: int,
    emit: PullEvents,
) -> None:
    def one(desc: Descriptor) -> Digest:
        client.fetch_blob(desc, blobs)
        emit(f"{desc.digest.short}: Pull complete ({desc.size} bytes)")
        return desc.digest

    if not layers:
        return
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="pull") as pool:
        futures = [pool.submit(one, d) for d in layers]
        done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future in done and (exc := future.exception()) is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                raise exc
