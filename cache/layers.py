"""Layer tars: a diff dir (overlay upper-dir form) to a deterministic OCI layer blob.

Writing reads only the diff dir and streams in one pass: tar bytes are hashed (the
diff_id), compressed, and hashed again by the BlobWriter (the blob digest). Entries are
sorted, ids numeric, user names empty, atime/ctime absent and mtimes clamped to
SOURCE_DATE_EPOCH, so the same dir always gives the same bytes (DESIGN "Layer tars are
deterministic"). Overlay whiteouts become OCI whiteouts (image-spec layer.md
"Whiteouts"): a 0/0 char device ``name`` -> empty file ``.wh.name``; an opaque dir ->
the dir plus ``dir/.wh..wh..opq``, which is written first among the dir's children.

The compression codecs live here too (``make_compressor``, ``open_decompressed``), so
every writer of gzip uses the same fast, fixed-level, mtime-0 encoder. Extraction is in
``cache.extract``, conversion between compressions in ``cache.convert``.
"""

from __future__ import annotations

import enum
import errno
import gzip
import io
import itertools
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, cast

import zstandard
from isal import isal_zlib

from cache.digest import Digest, Sha256
from cache.errors import CacheError, LayerError, disk_full, is_disk_full
from cache.oci import MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD, Descriptor
from cache.store import BlobStore, BlobWriter
from fstree.tree import short_path

_CHUNK = 1 << 20
_PATH_MAX = 4096  # Linux PATH_MAX, limits.h
ZSTD_LEVEL = 3
# ISA-L's level 1: at ~400 MB/s here it is ~6x stdlib zlib level 1 at about the same
# ratio (benchmarks/bench_compression.py; figures in the README).
GZIP_LEVEL = 1
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
PAX_XATTR = "SCHILY.xattr."
# Rootless with a single-id mapping, extraction cannot chown to the tar's ids; it keeps
# them here ("uid:gid") so a file copied up into a new layer is written with them again.
OWNER_XATTR = "user.pybuild.owner"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
# The empty layer: two zero blocks; its diff_id is sha256:5f70bf18a086007016e9...
EMPTY_TAR = bytes(1024)


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


@dataclass(frozen=True)
class LayerBlob:
    """A layer written to the store. ``empty``: the diff dir had no entries."""

    digest: Digest
    size: int
    diff_id: Digest
    media_type: str
    empty: bool

    def descriptor(self) -> Descriptor:
        """The layer's descriptor for a manifest."""
        return Descriptor(self.media_type, self.digest, self.size)


def detect_compression(head: bytes) -> Compression:
    """Compression of a blob from its first bytes (magic numbers); NONE if unknown."""
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    return Compression.NONE


# ---------------------------------------------------------------------------- writing


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


class TarPipe:
    """A file-like end tarfile talks to in stream mode; subclasses implement what they need."""

    def read(self, size: int = -1, /) -> bytes:
        raise io.UnsupportedOperation("read")

    def write(self, b: bytes, /) -> int:
        raise io.UnsupportedOperation("write")

    def tell(self) -> int:
        raise io.UnsupportedOperation("tell")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("seek")

    def close(self) -> None:
        pass


class TarSink(TarPipe):
    """tar bytes -> sha256 (diff_id) -> compressor -> BlobWriter (which hashes the blob)."""

    def __init__(self, compressor: Compressor, out: BlobWriter) -> None:
        self._compressor = compressor
        self._out = out
        self._diff = Sha256()

    def write(self, b: bytes, /) -> int:
        self._diff.update(b)
        if packed := self._compressor.compress(b):
            self._out.write(packed)
        return len(b)

    def tell(self) -> int:
        return self._diff.size

    def finish(self) -> Digest:
        self._out.write(self._compressor.flush())
        return self._diff.digest()


class LayerTarInfo(tarfile.TarInfo):
    """A TarInfo whose PAX records carry raw bytes, as GNU tar and Go's archive/tar write.

    tarfile marks a header holding any non-UTF-8 value (a binary xattr such as
    ``security.capability``, a non-UTF-8 name) ``hdrcharset=BINARY``, and GNU tar warns
    about that keyword on every such file. This overrides tarfile's private record
    writer (CPython 3.11-3.13 share its signature); the round-trip tests guard it.
    """

    @classmethod
    def _create_pax_generic_header(
        cls, pax_headers: dict[str, str], type: bytes, encoding: str
    ) -> bytes:
        records = b"".join(_pax_record(k, v) for k, v in pax_headers.items())
        info = {
            "name": "././@PaxHeader",
            "type": type,
            "size": len(records),
            "magic": tarfile.POSIX_MAGIC,
        }
        header: bytes = cls._create_header(info, tarfile.USTAR_FORMAT, "ascii", "replace")  # type: ignore[attr-defined]
        return header + cls._create_payload(records)  # type: ignore[attr-defined,no-any-return]


def _pax_record(keyword: str, value: str) -> bytes:
    """``"<len> <keyword>=<value>\n"``, where len counts the whole record, itself too."""
    body = b" " + keyword.encode() + b"=" + value.encode("utf-8", "surrogateescape") + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


@dataclass(frozen=True)
class _Entry:
    """One thing to write: a file in the diff dir, or a synthetic opaque marker."""

    arc: str  # archive name, relative, no trailing slash
    path: str  # file system path ("" for an opaque marker)
    st: os.stat_result | None  # None for an opaque marker
    xattrs: tuple[tuple[str, bytes], ...] = ()
    whiteout: bool = False  # a 0/0 char device, written as .wh.<name>
    opaque: bool = False  # a directory whose lower contents are hidden
    owner: tuple[int, int] | None = None  # from OWNER_XATTR


def write_layer(
    diff_dir: Path,
    blobs: BlobStore,
    *,
    compression: Compression = Compression.ZSTD,
    source_date_epoch: int | None = None,
) -> LayerBlob:
    """Write ``diff_dir`` as a layer blob; never holds more than a chunk in memory.

    Raises LayerError when the dir cannot be read; nothing is stored in that case.
    """
    if not diff_dir.is_dir():
        raise LayerError(f"cannot snapshot {diff_dir}: not a directory")
    count = 0
    try:
        with blobs.writer() as out:
            sink = TarSink(make_compressor(compression), out)
            entries = _walk(diff_dir)
            first = next(entries, None)
            if first is None:
                # An empty layer is the bare end-of-archive marker, as Go's archive/tar
                # (BuildKit) writes it; tarfile would pad it to a 10 KiB record, giving
                # a diff_id no other builder produces.
                sink.write(EMPTY_TAR)
            else:
                with tarfile.TarFile(
                    fileobj=sink,
                    mode="w",
                    format=tarfile.PAX_FORMAT,
                    encoding="utf-8",
                    errors="surrogateescape",
                    copybufsize=_CHUNK,
                ) as tar:
                    links: dict[tuple[int, int], str] = {}
                    for entry in itertools.chain((first,), entries):
                        _emit(tar, entry, links, source_date_epoch)
                        count += 1
            diff_id = sink.finish()
    except OSError as exc:
        raise _snapshot_error(diff_dir, exc) from None
    return LayerBlob(out.digest, out.size, diff_id, compression.media_type, empty=count == 0)


def _snapshot_error(diff_dir: Path, exc: OSError) -> CacheError:
    what = f"cannot snapshot {diff_dir}"
    if is_disk_full(exc):
        return disk_full(what, diff_dir)
    name = ""
    if exc.filename:
        top = f"{diff_dir}/"
        shown = str(exc.filename)
        name = f": {short_path(shown[len(top) :] if shown.startswith(top) else shown)}"
    message = f"{what}: {exc.strerror or exc}{name}"
    if exc.errno == errno.ENAMETOOLONG:
        return LayerError(
            message,
            hint=f"the step made a path longer than the kernel allows ({_PATH_MAX} bytes "
            "with the store's prefix): keep the file tree shallower",
        )
    return LayerError(message, hint="was the dir changed while it was read?")


def _walk(root: Path) -> Iterator[_Entry]:
    """Entries depth-first in sorted order, so parents come before their children."""
    stack = [iter(_children(str(root), "", opaque=False))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        yield entry
        if entry.st is not None and stat.S_ISDIR(entry.st.st_mode):
            stack.append(iter(_children(entry.path, entry.arc + "/", opaque=entry.opaque)))


def _children(path: str, prefix: str, *, opaque: bool) -> list[_Entry]:
    entries = [_entry(os.path.join(path, name), prefix, name) for name in os.listdir(path)]
    if opaque:
        entries.append(_Entry(prefix + OPAQUE_MARKER, "", None))
    return sorted(entries, key=_sort_key)


def _sort_key(entry: _Entry) -> tuple[int, bytes]:
    # Opaque marker first: a reader applying the layer then empties the dir before it
    # writes this layer's own children into it (moby/moby#17819).
    base = entry.arc.rpartition("/")[2]
    return (0 if entry.st is None else 1, os.fsencode(base))


def _entry(path: str, prefix: str, name: str) -> _Entry:
    st = os.lstat(path)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return _Entry(prefix + WHITEOUT_PREFIX + name, path, st, whiteout=True)
    xattrs = _read_xattrs(path)
    opaque = stat.S_ISDIR(st.st_mode) and any(n in OPAQUE_XATTRS and v == b"y" for n, v in xattrs)
    kept = tuple(
        x for x in xattrs if not x[0].startswith(OVERLAY_XATTR_PREFIXES) and x[0] != OWNER_XATTR
    )
    owner = _recorded_owner(dict(xattrs).get(OWNER_XATTR))
    return _Entry(prefix + name, path, st, kept, opaque=opaque, owner=owner)


def _recorded_owner(value: bytes | None) -> tuple[int, int] | None:
    try:
        uid, gid = (int(n) for n in (value or b"").split(b":"))
    except ValueError:
        return None
    return (uid, gid) if uid >= 0 and gid >= 0 else None


def _read_xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()  # the file system has no xattrs
    out = []
    for name in sorted(names):
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue  # removed meanwhile, or not readable by us
    return tuple(out)


def _emit(
    tar: tarfile.TarFile,
    entry: _Entry,
    links: dict[tuple[int, int], str],
    epoch: int | None,
) -> None:
    info = LayerTarInfo(entry.arc)
    info.uname = info.gname = ""
    if entry.st is None or entry.whiteout:
        # Markers are fixed (empty, root-owned, mode 0, mtime 0): the time a file was
        # deleted is not content, and a rebuild should give the same bytes.
        info.mode = info.uid = info.gid = info.mtime = 0
        tar.addfile(info)
        return
    st = entry.st
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    if entry.owner is not None and (st.st_uid, st.st_gid) == (0, 0):
        info.uid, info.gid = entry.owner  # ids the single-id user namespace lacks
    info.mtime = _clamp(st.st_mtime, epoch)
    # Binary values round-trip: tarfile marks the header hdrcharset=BINARY for them.
    info.pax_headers = {
        PAX_XATTR + name: value.decode("utf-8", "surrogateescape") for name, value in entry.xattrs
    }
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        first = links.setdefault((st.st_dev, st.st_ino), entry.arc)
        if first != entry.arc:
            info.type, info.linkname = tarfile.LNKTYPE, first
            tar.addfile(info)
            return
    if stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb", buffering=0) as src:
            tar.addfile(info, src)
        return
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry.path)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    else:
        return  # sockets cannot be put in a tar; docker skips them too
    tar.addfile(info)


def _clamp(mtime: float, epoch: int | None) -> int:
    seconds = int(mtime)
    return epoch if epoch is not None and seconds > epoch else seconds
