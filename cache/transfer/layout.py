"""A cache export in a local directory: an OCI image layout (image-layout.md).

``DIR/oci-layout``, ``DIR/index.json`` naming one cache manifest (``cache.transfer.exporter``),
and ``DIR/blobs/sha256/<hex>`` for the manifest, its config and every layer. Blobs are
written to a temp file in the same directory, fsynced and renamed, and index.json is
replaced last, so a reader sees the old export or the new one, never half of one.
Blobs of earlier exports stay (a later import may still want them; they are harmless).
Every blob read from a layout is checked against its digest before it is used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from cache.digest import Digest, sha256_bytes, verify
from cache.errors import CacheError, DigestMismatch
from cache.index import StepRecord
from cache.oci import (
    ANNOTATION_REF_NAME,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    Index,
)
from cache.store import BlobStore
from cache.transfer.exporter import (
    CacheConfig,
    CacheManifest,
    InvalidCache,
    decode_config,
    make_manifest,
    parse_manifest,
)

_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_REF_NAME = "latest"
_CHUNK = 1 << 20


def write_layout(dest: Path, records: Sequence[StepRecord], blobs: BlobStore) -> Digest:
    """Export ``records`` and their layer blobs (read, verified, from ``blobs``) to ``dest``.

    Returns the cache manifest's digest. ``dest`` is created if missing.
    """
    manifest, config = make_manifest(records)
    data = manifest.to_bytes()
    blob_dir = dest / "blobs" / "sha256"
    try:
        blob_dir.mkdir(parents=True, exist_ok=True)
        for layer in manifest.layers:
            if not _present(blob_dir, layer):
                with blobs.open(layer.digest) as src:
                    _write_blob(blob_dir, layer.digest, src)
        _put_bytes(blob_dir, manifest.config.digest, config)
        _put_bytes(blob_dir, sha256_bytes(data), data)
        desc = Descriptor(
            MEDIA_OCI_MANIFEST,
            sha256_bytes(data),
            len(data),
            annotations=((ANNOTATION_REF_NAME, _REF_NAME),),
        )
        _replace(dest / "oci-layout", _LAYOUT)
        _replace(dest / "index.json", Index((desc,)).to_bytes())
    except OSError as exc:
        raise CacheError(
            f"cannot write the cache export to {dest}: {exc.strerror or exc}",
            hint="check that the directory is writable and the disk is not full",
        ) from None
    return desc.digest


class LayoutSource:
    """A cache export in a local OCI layout, opened for import."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self._blob_dir = src / "blobs" / "sha256"
        if not src.is_dir():
            raise CacheError(
                f"cache source {src} does not exist or is not a directory",
                hint="pass the DIR that --cache-to type=local,dest=DIR wrote",
            )
        self.manifest = self._manifest()

    def config(self) -> CacheConfig:
        """The export's records, read from its verified config blob."""
        return decode_config(self._read(self.manifest.config), str(self.src))

    def fetch(self, desc: Descriptor, blobs: BlobStore) -> None:
        """Copy a layer blob into ``blobs``; DigestMismatch (nothing stored) if corrupt."""
        if blobs.intact(desc.digest):
            return  # one gone bad is copied again (the writer replaces it)
        path = self._blob_dir / desc.digest.hex
        try:
            with open(path, "rb") as src, blobs.writer(expected=desc.digest) as writer:
                while chunk := src.read(_CHUNK):
                    writer.write(chunk)
        except FileNotFoundError:
            raise CacheError(f"{self.src}: blob {desc.digest} is missing") from None
        except DigestMismatch:
            raise DigestMismatch(
                f"{self.src}: blob {desc.digest} does not match its digest; not imported"
            ) from None

    def _manifest(self) -> CacheManifest:
        index_path = self.src / "index.json"
        try:
            index = Index.from_bytes(index_path.read_bytes())
        except FileNotFoundError:
            raise InvalidCache(
                f"{self.src} is not an OCI layout: no index.json",
                hint="pass the DIR that --cache-to type=local,dest=DIR wrote",
            ) from None
        except OSError as exc:
            raise CacheError(f"cannot read {index_path}: {exc.strerror}") from None
        except CacheError as exc:
            raise InvalidCache(f"{index_path}: {exc.message}") from None
        manifests = [d for d in index.manifests if d.media_type == MEDIA_OCI_MANIFEST]
        if len(manifests) != 1:
            raise InvalidCache(
                f"{index_path} names {len(manifests)} image manifests, a cache export has one",
                hint="pass the DIR that --cache-to type=local,dest=DIR wrote",
            )
        return parse_manifest(self._read(manifests[0]), str(self.src))

    def _read(self, desc: Descriptor) -> bytes:
        """A small blob (manifest, config) of the layout, verified against ``desc``."""
        path = self._blob_dir / desc.digest.hex
        try:
            with open(path, "rb") as f:
                data = f.read(desc.size + 1)
        except FileNotFoundError:
            raise InvalidCache(f"{self.src}: blob {desc.digest} is missing") from None
        except OSError as exc:
            raise CacheError(f"cannot read {path}: {exc.strerror}") from None
        if len(data) != desc.size:
            raise InvalidCache(f"{self.src}: blob {desc.digest} has the wrong size")
        try:
            verify(desc.digest, sha256_bytes(data), f"{self.src}: blob {desc.digest}")
        except DigestMismatch as exc:
            raise InvalidCache(exc.message) from None
        return data


def _present(blob_dir: Path, desc: Descriptor) -> bool:
    try:
        return (blob_dir / desc.digest.hex).stat().st_size == desc.size
    except FileNotFoundError:
        return False


def _put_bytes(blob_dir: Path, digest: Digest, data: bytes) -> None:
    if not (blob_dir / digest.hex).is_file():
        _replace(blob_dir / digest.hex, data)


def _write_blob(blob_dir: Path, digest: Digest, src: BinaryIO) -> None:
    """Stream ``src`` into the layout. ``src`` is the store's verifying reader: it raises
    DigestMismatch at EOF, before the rename, so a corrupt store blob is never exported."""
    tmp = blob_dir / f".tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, blob_dir / digest.hex)
    finally:
        tmp.unlink(missing_ok=True)


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir, fsync, rename)."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
