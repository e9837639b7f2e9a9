"""A cache export in a registry: the same manifest as a local layout holds, pushed as an
OCI image manifest (BuildKit's ``image-manifest=true`` form) under a tag.

Push: every layer blob checked with HEAD first and uploaded only when missing, then the
config blob, then the manifest, so the tag never names an incomplete export. Pull: the
manifest (verified), its config (verified as it streams into the store), and each layer
through ``RegistryClient.fetch_blob``, which verifies before anything is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from cache.digest import Digest
from cache.distribution.client import RegistryClient
from cache.distribution.errors import ManifestNotFound
from cache.errors import CacheError
from cache.index import StepRecord
from cache.oci import MEDIA_OCI_MANIFEST, Descriptor
from cache.store import BlobStore
from cache.transfer.exporter import CacheConfig, CacheManifest, decode_config, make_manifest
from cache.transfer.exporter import parse_manifest as parse_cache_manifest


def push_cache(client: RegistryClient, records: Sequence[StepRecord], blobs: BlobStore) -> Digest:
    """Upload ``records`` and their layers to the client's reference; the manifest digest.

    The config blob is put into ``blobs`` first (the upload reads from the store); it is
    small and unreferenced there, which ``cache prune`` tidies.
    """
    manifest, config = make_manifest(records)
    blobs.put_bytes(config)
    for desc in (*manifest.layers, manifest.config):
        client.push_blob(desc, blobs)
    ref = client.ref
    return client.put_manifest(
        ref.object if ref.tag is None else ref.tag, manifest.to_bytes(), MEDIA_OCI_MANIFEST
    )


class RegistrySource:
    """A cache export on a registry, opened for import."""

    def __init__(self, client: RegistryClient, blobs: BlobStore) -> None:
        self._client = client
        self._blobs = blobs
        self.where = str(client.ref)
        self.manifest: CacheManifest | None = self._manifest()

    def _manifest(self) -> CacheManifest | None:
        try:
            remote = self._client.get_manifest()
        except ManifestNotFound:
            return None
        return parse_cache_manifest(remote.data, self.where)

    def config(self) -> CacheConfig:
        """The export's records; CacheError when the reference had no manifest."""
        if self.manifest is None:
            raise CacheError(f"{self.where}: no cache manifest to read records from")
        desc = self.manifest.config
        self._client.fetch_blob(desc, self._blobs)
        return decode_config(self._blobs.read_bytes(desc.digest), self.where)

    def fetch(self, desc: Descriptor, blobs: BlobStore) -> None:
        """Download a layer blob into ``blobs``, verified (a no-op when it is there)."""
        self._client.fetch_blob(desc, blobs)
