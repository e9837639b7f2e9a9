"""A layer with its file times clamped to SOURCE_DATE_EPOCH, made when an image is
assembled, as BuildKit's image exporter does with ``rewrite-timestamp=true``
(docs/build-repro.md "SOURCE_DATE_EPOCH"; exporter/containerimage/writer.go
``rewriteRemoteWithEpoch``, util/converter ``rewriteTimestampInTarHeader``).

Cached layers keep the times their files had when the step ran, whatever the epoch of
that build, so the image's digest does not depend on what the store held before: a
layer reused from a build without the epoch (or with another one) is clamped here just
as a freshly made one is. Every header time (mtime; atime and ctime in PAX records)
later than the epoch becomes the epoch; nothing else changes. A layer with no time to
clamp is returned as it is, never re-serialised.

The result is remembered per (epoch, compression, diff_id) in ``<store
root>/clamped/<epoch>/<compression>/<diff_id hex>`` (JSON: digest, size, diff_id),
written atomically; a record whose blob has since gone is ignored and the layer
clamped again. A per-layer store lock makes concurrent builds clamp it once.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cache.digest import Digest, Sha256, verify
from cache.errors import InvalidDigest, LayerError
from cache.layers import (
    FORMAT_ERRORS,
    Compression,
    LayerTarInfo,
    TarPipe,
    TarSink,
    detect_compression,
    make_compressor,
    open_decompressed,
)
from cache.memo import read_memo, write_memo
from cache.oci import Descriptor
from cache.store import CORRUPT_HINT, BlobStore

_CHUNK = 1 << 20
MEMO_DIR = "clamped"
_PAX_TIMES = ("mtime", "atime", "ctime")


@dataclass(frozen=True)
class ClampedLayer:
    layer: Descriptor
    diff_id: Digest


def clamp_layer(blobs: BlobStore, layer: Descriptor, diff_id: Digest, epoch: int) -> ClampedLayer:
    """``layer`` (whose tar's digest is ``diff_id``) with every time after ``epoch`` set to
    ``epoch``, in the same compression and media type; in ``blobs`` on return.

    Raises BlobNotFound when the layer blob is missing, DigestMismatch when its content
    or tar does not match, LayerError when it is not a valid compressed tar.
    """
    compression = _compression_of(blobs, layer)
    memo = blobs.root / MEMO_DIR / str(epoch) / compression.value / diff_id.hex
    with blobs.lock(f"clamp-{epoch}-{compression.value}-{diff_id.hex}"):
        known = _read_memo(blobs, memo, layer)
        if known is None:
            known = _clamp(blobs, layer, diff_id, compression, epoch)
            _write_memo(blobs, memo, known)
    return known


def _too_new(member: tarfile.TarInfo, epoch: int) -> bool:
    if member.mtime > epoch:
        return True
    try:
        return any(float(member.pax_headers.get(k, 0)) > epoch for k in _PAX_TIMES)
    except ValueError:
        return False  # a malformed PAX time is left as it is


def _set_times(member: tarfile.TarInfo, epoch: int) -> None:
    if member.mtime > epoch:
        member.mtime = epoch
    headers = dict(member.pax_headers)
    for name in _PAX_TIMES:
        value = headers.get(name)
        try:
            if value is not None and float(value) > epoch:
                headers[name] = str(epoch)
        except ValueError:
            continue
    member.pax_headers = headers


class _Hashing(TarPipe):
    """A reader that hashes what it reads (the source tar, to check its diff_id)."""

    def __init__(self, inner: IO[bytes], digest: Sha256) -> None:
        self._inner = inner
        self._digest = digest

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self._digest.update(data)
        return data


def _clamp(
    blobs: BlobStore, layer: Descriptor, diff_id: Digest, compression: Compression, epoch: int
) -> ClampedLayer:
    try:
        if not _needs_clamp(blobs, layer, compression, epoch):
            return ClampedLayer(layer, diff_id)
        with blobs.open(layer.digest) as raw, blobs.writer() as out:
            sink = TarSink(make_compressor(compression), out)
            source = Sha256()
            with open_decompressed(raw, compression) as stream:
                reader = _Hashing(stream, source)
                with (
                    tarfile.open(fileobj=reader, mode="r|", tarinfo=LayerTarInfo,
                                 encoding="utf-8", errors="surrogateescape") as src,
                    tarfile.TarFile(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT,
                                    encoding="utf-8", errors="surrogateescape",
                                    copybufsize=_CHUNK) as dst,
                ):  # fmt: skip
                    for member in src:
                        _set_times(member, epoch)
                        dst.addfile(member, src.extractfile(member) if member.isreg() else None)
                while reader.read(_CHUNK):  # the end-of-archive padding: diff_id covers it
                    pass
            while raw.read(_CHUNK):  # to EOF, where the store's reader verifies the blob
                pass
            # Inside the writer's block: a mismatch discards the new blob.
            verify(diff_id, source.digest(), f"layer {layer.digest} (diff_id)")
            new_diff_id = sink.finish()
    except FORMAT_ERRORS as exc:
        raise LayerError(
            f"layer {layer.digest} is not a valid {compression.value} tar: {exc}",
            hint=CORRUPT_HINT,
        ) from None
    except OSError as exc:
        raise LayerError(
            f"clamping the times of layer {layer.digest} failed: {exc.strerror or exc}",
            hint="check free space in the pybuild store",
        ) from None
    clamped = Descriptor(layer.media_type, out.digest, out.size, layer.annotations)
    return ClampedLayer(clamped, new_diff_id)


def _needs_clamp(blobs: BlobStore, layer: Descriptor, compression: Compression, epoch: int) -> bool:
    """Whether any header holds a time after ``epoch`` (stops at the first that does)."""
    with blobs.open(layer.digest) as raw:
        with (
            open_decompressed(raw, compression) as stream,
            tarfile.open(fileobj=stream, mode="r|", errors="surrogateescape") as tar,
        ):
            if any(_too_new(member, epoch) for member in tar):
                return True
        while raw.read(_CHUNK):  # read whole: the store's reader verifies the blob
            pass
    return False


def _compression_of(blobs: BlobStore, layer: Descriptor) -> Compression:
    with open(blobs.path(layer.digest), "rb") as f:  # BlobNotFound when absent
        return detect_compression(f.read(8))


def _read_memo(blobs: BlobStore, path: Path, layer: Descriptor) -> ClampedLayer | None:
    """The remembered result, or None when there is none or its blob is gone."""
    memo = read_memo(blobs, path)
    if memo is None:
        return None
    digest, size, record = memo
    try:
        diff_id = Digest.parse(str(record["diff_id"]))
    except (KeyError, InvalidDigest):
        return None  # torn by hand: clamping again rewrites it
    return ClampedLayer(Descriptor(layer.media_type, digest, size, layer.annotations), diff_id)


def _write_memo(blobs: BlobStore, path: Path, result: ClampedLayer) -> None:
    doc = {
        "digest": str(result.layer.digest),
        "size": result.layer.size,
        "diff_id": str(result.diff_id),
    }
    write_memo(blobs, path, doc, "the clamped layer")


def sweep_memos(blobs: BlobStore) -> int:
    """Remove the records whose clamped blob is gone (pruned), and emptied dirs; returns
    how many records went. A new epoch (each git commit) adds a record per layer, so
    prune keeps them from piling up."""
    removed = 0
    top = blobs.root / MEMO_DIR
    if not top.is_dir():
        return 0
    for path in sorted(top.glob("*/*/*")):
        try:
            digest = Digest.parse(str(json.loads(path.read_bytes())["digest"]))
            if blobs.has(digest):
                continue
        except (OSError, ValueError, TypeError, KeyError, InvalidDigest):
            pass  # unreadable: as good as gone
        path.unlink(missing_ok=True)
        removed += 1
    for folder in sorted(top.glob("*/*"), reverse=True) + sorted(top.glob("*")):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            continue
    return removed


def clamped_from(blobs: BlobStore, clamped: frozenset[Digest]) -> frozenset[Digest]:
    """The diff_ids of the layers that were clamped into any of the ``clamped`` blobs (a
    tagged image's layers): prune keeps the step records that made them, so rebuilding
    the image still hits."""
    sources: set[Digest] = set()
    for path in (blobs.root / MEMO_DIR).glob("*/*/*"):
        try:
            if Digest.parse(str(json.loads(path.read_bytes())["digest"])) in clamped:
                sources.add(Digest("sha256", path.name))
        except (OSError, ValueError, TypeError, KeyError, InvalidDigest):
            continue
    return frozenset(sources)
