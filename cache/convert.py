"""A layer in another compression: recompressed once per (diff_id, target), then reused.

A conversion streams the stored blob through its decompressor, hashes the tar (which
must match the layer's diff_id) and compresses it again into a new blob, in one pass;
compressing and writing run on their own threads (``cache.layerstream``).
The result is remembered in a small record, ``<store root>/converted/<target>/<diff_id
hex>`` (JSON: digest and size), written atomically; a record whose blob has since gone
(pruned) is ignored and the conversion done again. A per-layer store lock makes
concurrent exports of the same layer convert it once.

Output is deterministic: fixed levels, gzip with mtime 0 (``cache.layers``), so two
machines with the same codec versions agree on the converted digest. Plain tars need no
record: their blob digest is the diff_id itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cache.digest import Digest, verify
from cache.errors import LayerError
from cache.layers import (
    FORMAT_ERRORS,
    Compression,
    detect_compression,
    make_compressor,
    open_decompressed,
)
from cache.layerstream import LayerStream
from cache.memo import read_memo, write_memo
from cache.oci import Descriptor
from cache.store import CORRUPT_HINT, BlobStore

_CHUNK = 1 << 20
MEMO_DIR = "converted"


@dataclass(frozen=True)
class _Blob:
    digest: Digest
    size: int


def convert_layer(
    blobs: BlobStore, layer: Descriptor, diff_id: Digest, target: Compression
) -> Descriptor:
    """``layer`` (whose uncompressed digest is ``diff_id``) compressed as ``target``.

    A layer already in ``target`` (judged by the blob's magic bytes) is returned as is.
    Otherwise the converted blob is in ``blobs`` on return, and the descriptor carries
    ``target``'s OCI media type and the layer's annotations. Raises BlobNotFound when the
    layer blob is missing, DigestMismatch when its content or its tar does not match
    (nothing is stored then), LayerError when it is not a valid compressed tar.
    """
    source = _compression_of(blobs, layer)
    if source is target:
        return layer
    if target is Compression.NONE:
        if not blobs.intact(diff_id):  # one gone bad is written again
            _recompress(blobs, layer, source, diff_id, target)
        return Descriptor(target.media_type, diff_id, blobs.size(diff_id), layer.annotations)
    memo = memo_path(blobs, diff_id, target)
    with blobs.lock(f"convert-{target.value}-{diff_id.hex}"):
        known = _read_memo(blobs, memo)
        if known is None:
            known = _recompress(blobs, layer, source, diff_id, target)
            _write_memo(blobs, memo, known)
    return Descriptor(target.media_type, known.digest, known.size, layer.annotations)


def memo_path(blobs: BlobStore, diff_id: Digest, target: Compression) -> Path:
    """Where the record of ``diff_id`` converted to ``target`` lives (may not exist)."""
    return blobs.root / MEMO_DIR / target.value / diff_id.hex


def _compression_of(blobs: BlobStore, layer: Descriptor) -> Compression:
    actual = blobs.size(layer.digest)  # BlobNotFound when absent
    if actual != layer.size:
        raise LayerError(
            f"layer {layer.digest}: descriptor says {layer.size} bytes, blob has {actual}",
            hint=CORRUPT_HINT,
        )
    with open(blobs.path(layer.digest), "rb") as f:
        return detect_compression(f.read(8))


def _recompress(
    blobs: BlobStore, layer: Descriptor, source: Compression, diff_id: Digest, target: Compression
) -> _Blob:
    """Decompress, check against ``diff_id``, compress as ``target``: one streaming pass."""
    expected = diff_id if target is Compression.NONE else None
    try:
        with (
            blobs.open(layer.digest) as raw,
            blobs.writer(expected) as out,
            LayerStream(make_compressor(target), out) as stream,
        ):
            with open_decompressed(raw, source) as tar:
                while chunk := tar.read(_CHUNK):
                    stream.write(chunk)
            while raw.read(_CHUNK):  # to EOF, where the store's reader verifies the blob
                pass
            # Inside the writer's block: a mismatch discards the new blob.
            verify(diff_id, stream.finish(), f"layer {layer.digest} (diff_id)")
    except FORMAT_ERRORS as exc:
        _read_through(blobs, layer.digest)  # a corrupt blob explains it best: DigestMismatch
        raise LayerError(
            f"layer {layer.digest} is not a valid {source.value} stream: {exc}",
            hint=CORRUPT_HINT,
        ) from None
    except OSError as exc:
        raise LayerError(
            f"converting layer {layer.digest} to {target.value} failed: {exc.strerror or exc}",
            hint="check free space in the pybuild store",
        ) from None
    return _Blob(out.digest, out.size)


def _read_through(blobs: BlobStore, digest: Digest) -> None:
    with blobs.open(digest) as raw:
        while raw.read(_CHUNK):
            pass


def _read_memo(blobs: BlobStore, path: Path) -> _Blob | None:
    """The remembered conversion, or None when there is none or its blob is gone."""
    memo = read_memo(blobs, path)
    return None if memo is None else _Blob(memo[0], memo[1])


def _write_memo(blobs: BlobStore, path: Path, blob: _Blob) -> None:
    write_memo(blobs, path, {"digest": str(blob.digest), "size": blob.size}, "the conversion")
