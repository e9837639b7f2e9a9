"""The one-pass layer writer: same bytes as before, records made on the way, its threads."""

from __future__ import annotations

import errno
import io
import os
import random
import socket
import tarfile
from pathlib import Path

import pytest

from cache.codecs import Compression, make_compressor
from cache.digest import Digest, sha256_bytes
from cache.errors import CacheError, DigestMismatch
from cache.layermeta import LayerMeta, fingerprint, manifest
from cache.layers import write_layer
from cache.layerstream import LayerStream
from cache.store import BlobStore
from cache.tarout import TarOut, tar_header
from cache.unpacked import UnpackedLayers

FIXED_TIME = 1_600_000_000
# What the tarfile.TarFile writer (before the one-pass writer) made of fixed_tree().
PINNED = {
    Compression.NONE: "sha256:52fc76ba4e2ffee8f24b2fb380e205246dc5e967747c865c42f611c06950ea79",
    Compression.ZSTD: "sha256:4643d365a1c55d93bdac5b677f7097287a3b2def330b7258c80064cc070b33d4",
    Compression.GZIP: "sha256:25e1d2c19c32a9997588418879da6789168bad96727fb5621c91a54619a601b0",
}


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


def fixed_tree(root: Path) -> Path:
    """Most kinds of entry a diff dir holds, all of them fixed (content, modes, times)."""
    data = random.Random(7).randbytes((2 << 20) + 3)  # more than one read chunk
    (root / "d" / "sub").mkdir(parents=True)
    (root / "opaque").mkdir()
    (root / "d" / "empty").write_bytes(b"")
    (root / "d" / "one").write_bytes(b"1")
    (root / "d" / "block").write_bytes(b"b" * 512)
    (root / "d" / "block+1").write_bytes(b"c" * 513)
    (root / "d" / "sub" / "big").write_bytes(data)
    (root / "opaque" / "kept").write_text("kept\n")
    os.link(root / "d" / "one", root / "d" / "one-again")
    (root / "d" / "link").symlink_to("one")
    (root / "d" / "far").symlink_to("x" * 150)
    (root / ("n" * 150)).write_text("long name\n")
    (root / os.fsdecode(b"bin\xffname")).write_text("not utf-8\n")
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))  # skipped in the tar, kept in the records
    try:
        os.setxattr(root / "d" / "one", "user.bin", b"\x00\xff")
        os.setxattr(root / "opaque", "user.overlay.opaque", b"y")
    except OSError:
        pytest.skip("user.* xattrs not supported on this file system")
    if os.geteuid() != 0:
        pytest.skip("needs root: whiteouts are 0/0 char devices, owners are fixed to 0")
    os.mknod(root / "gone", 0o600 | 0o020000, 0)
    for top, dirs, files in os.walk(root, topdown=False):
        for name in dirs + files:
            path = os.path.join(top, name)
            os.lchown(path, 0, 0)
            if not os.path.islink(path):  # the umask must not decide the modes
                os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
            os.utime(path, (FIXED_TIME, FIXED_TIME), follow_symlinks=False)
    return root


@pytest.mark.parametrize("compression", list(Compression))
def test_one_pass_writer_keeps_the_layer_bytes(
    blobs: BlobStore, tmp_path: Path, compression: Compression
) -> None:
    layer = write_layer(fixed_tree(tmp_path / "t"), blobs, compression=compression, record=True)
    assert str(layer.digest) == PINNED[compression]
    assert str(layer.diff_id) == PINNED[Compression.NONE]


def test_records_made_while_writing_equal_a_separate_walk(blobs: BlobStore, tmp_path: Path) -> None:
    tree = fixed_tree(tmp_path / "t")
    record = write_layer(tree, blobs, record=True).record
    assert record is not None
    assert list(record.manifest) == manifest(tree)
    assert record.fingerprint == fingerprint(tree)


def test_no_records_unless_asked(blobs: BlobStore, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("x")
    assert write_layer(tree, blobs).record is None


def test_adopting_with_records_stores_what_a_fresh_record_would(
    blobs: BlobStore, tmp_path: Path
) -> None:
    tree = fixed_tree(tmp_path / "t")
    expected_manifest, expected_fp = manifest(tree), fingerprint(tree)
    layer = write_layer(tree, blobs, record=True)
    layers = UnpackedLayers(blobs)
    placed = layers.adopt(layer.diff_id, tree, layer.record)
    meta = LayerMeta(blobs.root, blobs.tmp_dir)
    assert meta.recorded(layer.diff_id.hex) == expected_manifest
    assert meta.fingerprint_matches(layer.diff_id.hex, placed)
    assert fingerprint(placed) == expected_fp
    assert layers.check(layer.diff_id, placed) is None


# ---------------------------------------------------------------------------- the stream


class _Collect:
    """A BlobWriter stand-in keeping what it is given."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.data = bytearray()
        self.writes = 0
        self._fail_after = fail_after

    def write(self, data: bytes) -> int:
        if self._fail_after is not None and self.writes >= self._fail_after:
            raise CacheError("disk full")
        self.writes += 1
        self.data += data
        return len(data)


def _stream(out: _Collect, pieces: list[bytes], batch: int) -> Digest:
    compressor = make_compressor(Compression.ZSTD)
    with LayerStream(compressor, out, batch=batch, depth=2) as stream:  # type: ignore[arg-type]
        for piece in pieces:
            stream.write(piece)
        return stream.finish()


def test_stream_output_does_not_depend_on_how_writes_are_split() -> None:
    data = random.Random(3).randbytes(300_000) + b"text " * 50_000
    one, many = _Collect(), _Collect()
    assert _stream(one, [data], batch=1 << 20) == sha256_bytes(data)
    pieces = [data[i : i + 777] for i in range(0, len(data), 777)]
    assert _stream(many, pieces, batch=4096) == sha256_bytes(data)
    assert bytes(one.data) == bytes(many.data)
    assert many.writes > 1


def test_stream_raises_its_threads_error_and_stops() -> None:
    out = _Collect(fail_after=1)
    data = random.Random(4).randbytes(1 << 20)
    with pytest.raises(CacheError, match="disk full"):
        _stream(out, [data[i : i + 4096] for i in range(0, len(data), 4096)], batch=4096)
    assert out.writes == 1


# ---------------------------------------------------------------------------- archives


def _members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for name, data in (("blobs", None), ("blobs/f", b"x" * 700), ("index.json", b"{}")):
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE if data is None else tarfile.REGTYPE
        info.mode, info.mtime, info.uname, info.gname = 0o644, 0, "", ""
        out.append((info, data))
    return out


def _by_tarfile(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _by_tarout(
    path: Path, blobs: BlobStore, members: list[tuple[tarfile.TarInfo, bytes | None]]
) -> bytes:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        tar = TarOut(fd)
        for info, data in members:
            if data is None or info.name == "index.json":
                tar.add_bytes(info, data or b"")
            else:
                with blobs.writer() as w:
                    w.write(data)
                tar.add_blob(info, blobs, w.digest)
        tar.close()
    finally:
        os.close(fd)
    return path.read_bytes()


def test_tarout_writes_what_tarfile_writes(blobs: BlobStore, tmp_path: Path) -> None:
    assert _by_tarout(tmp_path / "a.tar", blobs, _members()) == _by_tarfile(_members())


def test_tarout_copies_through_python_where_the_kernel_cannot(
    blobs: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    assert _by_tarout(tmp_path / "a.tar", blobs, _members()) == _by_tarfile(_members())


def test_tarout_refuses_a_corrupt_blob(blobs: BlobStore, tmp_path: Path) -> None:
    with blobs.writer() as w:
        w.write(b"good content")
    blobs.path(w.digest).write_bytes(b"evil content")
    fd = os.open(tmp_path / "a.tar", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(DigestMismatch):
            TarOut(fd).add_blob(tarfile.TarInfo("b"), blobs, w.digest)
    finally:
        os.close(fd)


def _random_info(rng: random.Random) -> tarfile.TarInfo:
    names = ["a", "dir/file.txt", "é/ü", os.fsdecode(b"bad\xff"), "n" * rng.randint(95, 105)]
    info = tarfile.TarInfo(rng.choice(names) + "/x" * rng.randint(0, 2))
    kinds = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE]
    info.type = rng.choice([*kinds, tarfile.FIFOTYPE, tarfile.CHRTYPE])
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = rng.choice(["t", "l" * rng.randint(98, 102), "ö"])
    info.mode = rng.choice([0, 0o644, 0o4755, 0o170777])
    info.uid = rng.choice([0, 1000, 8**7 - 1, 8**7])
    info.gid = rng.choice([0, 65534, 8**7 - 1, 8**7])
    info.size = rng.choice([0, 1, 8**11 - 1, 8**11]) if info.type == tarfile.REGTYPE else 0
    info.mtime = rng.choice([0, 1_700_000_000, 8**11 - 1, 8**11, -1, 1.5])
    info.uname = info.gname = rng.choice(["", "", "root"])
    info.devmajor, info.devminor = rng.choice([(0, 0), (1, 3)])
    if rng.random() < 0.2:
        info.pax_headers = {"SCHILY.xattr.user.a": "b"}
    return info


def test_tar_headers_are_tarfiles_own() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        info = _random_info(rng)
        assert tar_header(info) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_an_empty_diff_dir_reuses_the_stored_empty_layer_without_writing(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "store")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_layer(tmp_path / "a", blobs, record=True)
    writes = []
    real_writer = blobs.writer
    blobs.writer = lambda *a, **k: writes.append(1) or real_writer(*a, **k)  # type: ignore[method-assign]
    again = write_layer(tmp_path / "b", blobs, record=True)
    assert writes == []
    assert (again.digest, again.diff_id, again.size, again.empty) == (
        first.digest,
        first.diff_id,
        first.size,
        True,
    )
    assert again.record is not None  # the records a full pass makes of the empty dir
    assert list(again.record.manifest) == manifest(tmp_path / "b")
    assert again.record.fingerprint == fingerprint(tmp_path / "b")
    (tmp_path / "b" / "f").write_text("x")
    assert write_layer(tmp_path / "b", blobs).digest != first.digest
    assert writes == [1]
