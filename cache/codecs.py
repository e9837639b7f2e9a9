"""Layer compressions: what a blob is compressed with, and the one encoder and decoder of each.

Every writer of gzip uses the same fast, fixed-level, mtime-0 encoder, and every writer
of zstd the same single-threaded level-3 one, so the same tar always gives the same
blob. (zstd's multi-threaded mode writes other bytes than its single-threaded mode,
whatever the thread count, so switching would change every zstd layer digest.)
"""

from __future__ import annotations

import enum
import gzip
import io
import tarfile
import zlib
from typing import IO, Protocol, cast

import zstandard
from isal import isal_zlib

from cache.oci import MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD

_CHUNK = 1 << 20
ZSTD_LEVEL = 3
# ISA-L's level 1: at ~400 MB/s here it is ~6x stdlib zlib level 1 at about the same
# ratio (benchmarks/bench_compression.py; figures in the README).
GZIP_LEVEL = 1
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


class Compression(enum.Enum):
    """How a layer blob is compressed; the value is what users type."""

    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"

    @property
    def media_type(self) -> str:
        return {
            Compression.ZSTD: MEDIA_OCI_LAYER_ZSTD,
            Compression.GZIP: MEDIA_OCI_LAYER_GZIP,
            Compression.NONE: MEDIA_OCI_LAYER,
        }[self]


def detect_compression(head: bytes) -> Compression:
    """Compression of a blob from its first bytes (magic numbers); NONE if unknown."""
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    return Compression.NONE


class Compressor(Protocol):
    """A streaming compressor: feed ``compress`` chunks, then ``flush`` once at the end."""

    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes, /) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def make_compressor(compression: Compression) -> Compressor:
    """A fresh compressor; the same input always gives the same bytes (fixed levels).

    gzip is written by ISA-L (python-isal) with wbits=31: a gzip wrapper with mtime 0
    and no file name, fed whole blocks so that only the content decides the output. It
    is stable for one isal version, and not byte-identical to zlib's.
    """
    if compression is Compression.ZSTD:
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
    if compression is Compression.GZIP:
        inner = cast(Compressor, isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 31))
        return _WholeBlocks(inner)
    return _Identity()


class _WholeBlocks:
    """Feeds ``inner`` fixed-size blocks only: ISA-L's output depends on how its input is
    split, and the sizes tarfile or a decompressor hands us are not part of the content."""

    def __init__(self, inner: Compressor, block: int = _CHUNK) -> None:
        self._inner = inner
        self._block = block
        self._pending = bytearray()

    def compress(self, data: bytes, /) -> bytes:
        self._pending += data
        whole = len(self._pending) - len(self._pending) % self._block
        if not whole:
            return b""
        with memoryview(self._pending) as view:
            out = b"".join(
                self._inner.compress(view[i : i + self._block])  # type: ignore[arg-type]
                for i in range(0, whole, self._block)
            )
        del self._pending[:whole]
        return out

    def flush(self) -> bytes:
        rest = self._inner.compress(bytes(self._pending)) if self._pending else b""
        self._pending.clear()
        return rest + self._inner.flush()


class _Unclosed(io.RawIOBase):
    """``raw`` as a reader whose ``close`` leaves ``raw`` open (the NONE case)."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        return self._raw.read(size)

    def readall(self) -> bytes:
        return self._raw.read()


def open_decompressed(raw: IO[bytes], compression: Compression) -> IO[bytes]:
    """A reader of the tar inside a layer stream; closing it leaves ``raw`` open.

    Multi-frame zstd and multi-member gzip are read whole, as docker and containerd do.
    Corrupt input raises zstandard.ZstdError, zlib.error, gzip.BadGzipFile or EOFError
    from ``read``. The caller drains ``raw`` to EOF when the store must verify it.
    """
    if compression is Compression.ZSTD:
        dctx = zstandard.ZstdDecompressor()
        return dctx.stream_reader(raw, read_size=_CHUNK, read_across_frames=True, closefd=False)
    if compression is Compression.GZIP:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    return cast(IO[bytes], _Unclosed(raw))


# Errors a corrupt compressed stream or tar raises while it is read.
FORMAT_ERRORS = (tarfile.TarError, zstandard.ZstdError, zlib.error, gzip.BadGzipFile, EOFError)
