"""Layer tars: a diff dir (overlay upper-dir form) to a deterministic OCI layer blob.

Writing reads the diff dir once and streams (``cache.layerstream``): tar bytes are
hashed (the diff_id) while a worker thread compresses them and the BlobWriter hashes
the blob; with ``record`` the same pass makes the layermeta records. Entries
(``cache.layerwalk``) are sorted, ids numeric, user names empty, atime/ctime absent and
mtimes clamped to SOURCE_DATE_EPOCH, so the same dir always gives the same bytes
(DESIGN "Layer tars are deterministic"). Overlay whiteouts become OCI whiteouts
(image-spec layer.md "Whiteouts"): a 0/0 char device ``name`` -> empty file
``.wh.name``; an opaque dir -> the dir plus ``dir/.wh..wh..opq``, which is written first
among the dir's children.

The compression codecs are in ``cache.codecs`` (re-exported here, where most callers
import them). Extraction is in ``cache.extract``, conversion between compressions in
``cache.convert``.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from cache.codecs import (
    FORMAT_ERRORS,
    GZIP_LEVEL,
    ZSTD_LEVEL,
    Compression,
    Compressor,
    detect_compression,
    make_compressor,
    open_decompressed,
)
from cache.digest import Digest, Sha256
from cache.errors import CacheError, LayerError, disk_full, is_disk_full
from cache.layermeta import ContentHash, TreeRecord, TreeRecorder
from cache.layerstream import LayerStream
from cache.layerwalk import (
    OPAQUE_MARKER,
    OPAQUE_XATTRS,
    OVERLAY_XATTR_PREFIXES,
    OWNER_XATTR,
    WHITEOUT_PREFIX,
    Entry,
    read_xattrs,
    walk,
)
from cache.oci import Descriptor
from cache.store import BlobStore, BlobWriter
from cache.tarout import archive_end, content_padding, tar_header, ustar_block
from fstree.tree import short_path

__all__ = [
    "EMPTY_TAR",
    "FORMAT_ERRORS",
    "GZIP_LEVEL",
    "OPAQUE_MARKER",
    "OPAQUE_XATTRS",
    "OVERLAY_XATTR_PREFIXES",
    "OWNER_XATTR",
    "PAX_XATTR",
    "WHITEOUT_PREFIX",
    "ZSTD_LEVEL",
    "Compression",
    "Compressor",
    "LayerBlob",
    "LayerTarInfo",
    "TarPipe",
    "TarSink",
    "detect_compression",
    "make_compressor",
    "open_decompressed",
    "write_layer",
]

_CHUNK = 1 << 20
_PATH_MAX = 4096  # Linux PATH_MAX, limits.h
PAX_XATTR = "SCHILY.xattr."
# The empty layer: two zero blocks; its diff_id is sha256:5f70bf18a086007016e9...
EMPTY_TAR = bytes(1024)


@dataclass(frozen=True)
class LayerBlob:
    """A layer written to the store. ``empty``: the diff dir had no entries."""

    digest: Digest
    size: int
    diff_id: Digest
    media_type: str
    empty: bool
    # The diff dir's layermeta records, when write_layer was asked for them.
    record: TreeRecord | None = field(default=None, compare=False, repr=False)

    def descriptor(self) -> Descriptor:
        """The layer's descriptor for a manifest."""
        return Descriptor(self.media_type, self.digest, self.size)


# ---------------------------------------------------------------------------- writing


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


def write_layer(
    diff_dir: Path,
    blobs: BlobStore,
    *,
    compression: Compression = Compression.ZSTD,
    source_date_epoch: int | None = None,
    record: bool = False,
) -> LayerBlob:
    """Write ``diff_dir`` as a layer blob in one read pass; memory stays bounded.

    With ``record``, the same pass also makes the dir's layermeta records (``LayerBlob.
    record``), so placing it as an unpacked layer need not read it again. Raises
    LayerError when the dir cannot be read; nothing is stored in that case.
    """
    if not diff_dir.is_dir():
        raise LayerError(f"cannot snapshot {diff_dir}: not a directory")
    known = _EMPTY_LAYERS.get(compression)
    if known is not None and _is_empty_dir(diff_dir) and blobs.has(known.digest):
        # A step that changed nothing: the same 1024-byte tar as last time, already stored.
        return replace(known, record=_root_record(diff_dir) if record else None)
    recorder = TreeRecorder() if record else None
    try:
        with blobs.writer() as out, LayerStream(make_compressor(compression), out) as stream:
            writer = _TarWriter(stream, source_date_epoch, recorder)
            count = writer.write_tree(str(diff_dir))
            diff_id = stream.finish()
    except OSError as exc:
        raise _snapshot_error(diff_dir, exc) from None
    tree = recorder.result() if recorder is not None else None
    media_type = compression.media_type
    blob = LayerBlob(out.digest, out.size, diff_id, media_type, empty=count == 0, record=tree)
    if blob.empty:
        _EMPTY_LAYERS[compression] = replace(blob, record=None)
    return blob


# The empty layer of each compression, once this process has written it: later steps
# that change nothing reuse it when the store still has the blob (no write, no fsync).
_EMPTY_LAYERS: dict[Compression, LayerBlob] = {}


def _root_record(diff_dir: Path) -> TreeRecord:
    """The records of an empty diff dir: the dir itself, as the writer's pass adds it."""
    recorder = TreeRecorder()
    recorder.add("", os.lstat(diff_dir), read_xattrs(str(diff_dir)))
    return recorder.result()


def _is_empty_dir(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


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


class _TarWriter:
    """Writes the entries of a diff dir as a pax tar, byte for byte what ``tarfile.TarFile``
    (PAX_FORMAT, utf-8, surrogateescape) wrote for them (headers: ``cache.tarout``);
    contents are read once and can be hashed on the way (the layermeta records)."""

    def __init__(
        self, stream: LayerStream, epoch: int | None, recorder: TreeRecorder | None
    ) -> None:
        self._stream = stream
        self._epoch = epoch
        self._recorder = recorder
        self._links: dict[tuple[int, int], str] = {}  # inode -> first archive name
        self._hashes: dict[tuple[int, int], str] = {}  # inode -> content hash (records)

    def write_tree(self, root: str) -> int:
        """Write every entry and the end of the archive; returns the number of entries."""
        if self._recorder is not None:
            self._recorder.add("", os.lstat(root), read_xattrs(root))
        count = 0
        for entry in walk(root):
            self._emit(entry)
            count += 1
        if count == 0:
            # An empty layer is the bare end-of-archive marker, as Go's archive/tar
            # (BuildKit) writes it; tarfile would pad it to a 10 KiB record, giving
            # a diff_id no other builder produces.
            self._stream.write(EMPTY_TAR)
            return 0
        self._stream.write(archive_end(self._stream.size))
        return count

    def _header(self, info: tarfile.TarInfo) -> None:
        self._stream.write(tar_header(info))

    def _record(self, entry: Entry, *, content: str = "", link: str = "") -> None:
        if self._recorder is not None and entry.st is not None:
            self._recorder.add(entry.rel, entry.st, entry.all_xattrs, content=content, link=link)

    def _emit(self, entry: Entry) -> None:
        st = entry.st
        if st is not None and not (entry.whiteout or entry.xattrs) and self._plain(entry, st):
            return
        info = LayerTarInfo(entry.arc)
        info.uname = info.gname = ""
        if entry.st is None or entry.whiteout:
            # Markers are fixed (empty, root-owned, mode 0, mtime 0): the time a file was
            # deleted is not content, and a rebuild should give the same bytes.
            info.mode = info.uid = info.gid = info.mtime = 0
            self._header(info)
            self._record(entry)
            return
        st = entry.st
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = _owner(entry, st)
        info.mtime = _clamp(st.st_mtime, self._epoch)
        info.pax_headers = {
            PAX_XATTR + name: value.decode("utf-8", "surrogateescape")
            for name, value in entry.xattrs
        }
        inode = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            first = self._links.setdefault(inode, entry.arc)
            if first != entry.arc:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self._header(info)
                link = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else ""
                self._record(entry, content=self._hashes.get(inode, ""), link=link)
                return
        if stat.S_ISREG(st.st_mode):
            info.size = st.st_size
            content = self._file(entry.path, tar_header(info), info.size)
            self._hashes[inode] = content
            self._record(entry, content=content)
            return
        self._special(entry, info, st)

    def _plain(self, entry: Entry, st: os.stat_result) -> bool:
        """Write the most common entries, a file with one link or a dir with no xattrs,
        straight from their stat; False (nothing written) for any other."""
        mode = st.st_mode
        if stat.S_ISREG(mode):
            if st.st_nlink != 1:
                return False
            kind, size = tarfile.REGTYPE, st.st_size
        elif stat.S_ISDIR(mode):
            kind, size = tarfile.DIRTYPE, 0
        else:
            return False
        uid, gid = _owner(entry, st)
        mtime = _clamp(st.st_mtime, self._epoch)
        header = ustar_block(entry.arc, mode, uid, gid, size, mtime, kind, "")
        if header is None:
            return False
        if kind == tarfile.DIRTYPE:
            self._stream.write(header)
            self._record(entry)
        else:
            self._record(entry, content=self._file(entry.path, header, size))
        return True

    def _special(self, entry: Entry, info: tarfile.TarInfo, st: os.stat_result) -> None:
        link = ""
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry.path)
            link = info.linkname
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
        else:
            self._record(entry)  # sockets cannot be put in a tar; docker skips them too
            return
        self._header(info)
        self._record(entry, link=link)

    def _file(self, path: str, header: bytes, size: int) -> str:
        """``header`` and the content of a regular file, read exactly ``size`` bytes (as
        tarfile does); returns the content hash for the records ("" without them)."""
        hasher = ContentHash() if self._recorder is not None else None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self._stream.write(header)
            left = size
            while left:
                chunk = os.read(fd, min(left, _CHUNK))
                if not chunk:
                    raise OSError("unexpected end of data")
                if hasher is not None:
                    hasher.update(chunk)
                self._stream.write(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        self._stream.write(content_padding(size))
        return hasher.value() if hasher is not None else ""


def _owner(entry: Entry, st: os.stat_result) -> tuple[int, int]:
    """The entry's uid and gid in the tar: its recorded owner (OWNER_XATTR) where the
    single-id user namespace left it root-owned, else its stat's."""
    if entry.owner is not None and (st.st_uid, st.st_gid) == (0, 0):
        return entry.owner
    return st.st_uid, st.st_gid


def _clamp(mtime: float, epoch: int | None) -> int:
    seconds = int(mtime)
    return epoch if epoch is not None and seconds > epoch else seconds
