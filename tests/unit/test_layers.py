"""Layer tars: determinism, metadata round trips, compression, safe extraction."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import zstandard

from cache.errors import DigestMismatch, LayerError
from cache.extract import extract_layer
from cache.layers import Compression, LayerBlob, detect_compression, write_layer
from cache.oci import MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD, Descriptor
from cache.store import BlobStore

FIXED_TIME = 1_600_000_000


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a layer records about a tree: type, mode, ids, mtime, content, target."""
    out: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            info: tuple[object, ...] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                int(st.st_mtime),
            )
            if stat.S_ISREG(st.st_mode):
                info += (Path(path).read_bytes(),)
            elif stat.S_ISLNK(st.st_mode):
                info += (os.readlink(path),)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info += (st.st_rdev,)
            out[os.path.relpath(path, root)] = info
    return out


def set_times(root: Path, when: int = FIXED_TIME) -> None:
    """Give every entry under root (and root) the same mtime, without following links."""
    for top, dirs, files in os.walk(root, topdown=False):
        for name in dirs + files:
            os.utime(os.path.join(top, name), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


def make_tree(root: Path) -> Path:
    """A small tree with one of most things a layer can hold."""
    (root / "etc" / "sub").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0\n")
    (root / "etc" / "empty").write_bytes(b"")
    (root / "bin" / "tool").write_bytes(os.urandom(100_000))
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "sh").symlink_to("../etc/passwd")
    (root / "dangling").symlink_to("/nowhere/at/all")
    set_times(root)
    return root


def tar_blob(blobs: BlobStore, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Descriptor:
    """An uncompressed layer blob built by hand (e.g. a hostile one)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return Descriptor(MEDIA_OCI_LAYER, blobs.put_bytes(raw), len(raw))


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = FIXED_TIME
    return info


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def blobs(store_root: Path) -> BlobStore:
    return BlobStore(store_root)


def _tar_members(blobs: BlobStore, layer: LayerBlob) -> list[tarfile.TarInfo]:
    """The members of a layer, read back with tarfile (any compression)."""
    dest = io.BytesIO()
    with blobs.open(layer.digest) as f:
        raw = f.read()
    if layer.media_type == MEDIA_OCI_LAYER_ZSTD:
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    elif layer.media_type == MEDIA_OCI_LAYER_GZIP:
        raw = gzip.decompress(raw)
    dest.write(raw)
    dest.seek(0)
    with tarfile.open(fileobj=dest, mode="r:") as tar:
        return tar.getmembers()


def _uncompressed(blobs: BlobStore, diff_dir: Path, **kw: Any) -> LayerBlob:
    return write_layer(diff_dir, blobs, compression=Compression.NONE, **kw)


def _user_xattrs_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.pybuild-probe", b"1")
        os.removexattr(path, "user.pybuild-probe")
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------- writing


def test_detect_compression_from_magic_bytes() -> None:
    assert detect_compression(b"\x28\xb5\x2f\xfd\x00") is Compression.ZSTD
    assert detect_compression(b"\x1f\x8b\x08") is Compression.GZIP
    assert detect_compression(b"etc/\x00\x00") is Compression.NONE
    assert detect_compression(b"") is Compression.NONE


def test_compression_media_types() -> None:
    assert Compression.ZSTD.media_type == MEDIA_OCI_LAYER_ZSTD
    assert Compression.GZIP.media_type == MEDIA_OCI_LAYER_GZIP
    assert Compression.NONE.media_type == MEDIA_OCI_LAYER


def test_same_dir_twice_gives_byte_identical_layer(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    first = write_layer(tree, blobs)
    second = write_layer(tree, blobs)
    assert first == second
    assert first.media_type == MEDIA_OCI_LAYER_ZSTD
    assert not first.empty


def test_identical_trees_in_different_dirs_give_same_layer(
    blobs: BlobStore, tmp_path: Path
) -> None:
    a = make_tree(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b, symlinks=True)
    set_times(b)
    assert write_layer(a, blobs).digest == write_layer(b, blobs).digest


def test_mtimes_change_the_digest_without_epoch(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    before = write_layer(tree, blobs)
    set_times(tree, FIXED_TIME + 100)
    assert write_layer(tree, blobs).digest != before.digest


def test_epoch_clamps_newer_mtimes_to_same_digest(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    epoch = FIXED_TIME - 1000
    set_times(tree, FIXED_TIME)
    first = write_layer(tree, blobs, source_date_epoch=epoch)
    set_times(tree, FIXED_TIME + 5000)
    second = write_layer(tree, blobs, source_date_epoch=epoch)
    assert first.digest == second.digest
    assert {m.mtime for m in _tar_members(blobs, first)} == {epoch}


def test_epoch_keeps_older_mtimes(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    old = FIXED_TIME - 10
    os.utime(tree / "etc" / "passwd", (old, old))
    layer = _uncompressed(blobs, tree, source_date_epoch=FIXED_TIME - 5)
    mtimes = {m.name: m.mtime for m in _tar_members(blobs, layer)}
    assert mtimes["etc/passwd"] == old
    assert mtimes["bin/tool"] == FIXED_TIME - 5


def test_entries_sorted_relative_with_dir_slashes(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    layer = _uncompressed(blobs, tree)
    listing = (
        subprocess.run(
            ["tar", "-t"], input=blobs.read_bytes(layer.digest), capture_output=True, check=True
        )
        .stdout.decode()
        .split()
    )
    assert listing == [
        "bin/",
        "bin/sh",
        "bin/tool",
        "dangling",
        "etc/",
        "etc/empty",
        "etc/passwd",
        "etc/sub/",
    ]


def test_headers_have_numeric_ids_and_no_names_or_atime(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    for m in _tar_members(blobs, _uncompressed(blobs, tree)):
        assert m.uname == m.gname == ""
        assert m.uid == os.geteuid()
        assert not {"atime", "ctime"} & set(m.pax_headers)


def test_gnu_tar_lists_our_layer(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    layer = _uncompressed(blobs, tree)
    result = subprocess.run(
        ["tar", "-tvf", str(blobs.path(layer.digest))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "bin/sh -> ../etc/passwd" in result.stdout
    assert "-rwxr-xr-x" in result.stdout


def test_gnu_tar_extracts_same_tree(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    layer = _uncompressed(blobs, tree)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        ["tar", "-xpf", str(blobs.path(layer.digest)), "-C", str(out), "--numeric-owner"],
        check=True,
    )
    assert snapshot(out) == snapshot(tree)


def test_gnu_tar_reads_binary_xattrs_and_odd_names_silently(
    blobs: BlobStore, tmp_path: Path
) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    odd = tree / os.fsdecode(b"caf\xe9")
    odd.write_text("x")
    if not _user_xattrs_supported(odd):
        pytest.skip("user.* xattrs not supported on this file system")
    os.setxattr(odd, "user.binary", b"\xff\x00\x01")
    layer = _uncompressed(blobs, tree)
    out = tmp_path / "out"
    out.mkdir()
    result = subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=user.*", "-xvf", str(blobs.path(layer.digest))],
        cwd=out,
        capture_output=True,
    )
    assert result.returncode == 0
    assert result.stderr == b""
    assert os.getxattr(out / odd.name, "user.binary") == b"\xff\x00\x01"


def test_empty_dir_gives_empty_layer(blobs: BlobStore, tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    layer = write_layer(tmp_path / "e", blobs)
    assert layer.empty
    assert blobs.has(layer.digest)
    assert _tar_members(blobs, layer) == []


@pytest.mark.parametrize("compression", list(Compression))
def test_empty_layer_is_buildkits_1024_zero_bytes(
    blobs: BlobStore, tmp_path: Path, compression: Compression
) -> None:
    (tmp_path / "e").mkdir()
    layer = write_layer(tmp_path / "e", blobs, compression=compression)
    # The diff_id every BuildKit/docker image has for its empty layers.
    assert str(layer.diff_id) == (
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    )
    if compression is Compression.NONE:
        assert blobs.read_bytes(layer.digest) == bytes(1024)
    out = tmp_path / "out"
    out.mkdir()
    descriptor = Descriptor(layer.media_type, layer.digest, layer.size)
    assert extract_layer(blobs, descriptor, out) == layer.diff_id
    assert list(out.iterdir()) == []


def test_missing_diff_dir_raises_layer_error(blobs: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(LayerError):
        write_layer(tmp_path / "absent", blobs)


def test_hardlinks_become_one_file_and_links(blobs: BlobStore, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "b").write_text("shared")
    os.link(tree / "b", tree / "a")
    os.link(tree / "b", tree / "c")
    members = {m.name: m for m in _tar_members(blobs, _uncompressed(blobs, tree))}
    assert members["a"].isreg() and members["a"].size == 6
    assert members["b"].islnk() and members["b"].linkname == "a"
    assert members["c"].islnk() and members["c"].linkname == "a"


def test_special_modes_are_kept(blobs: BlobStore, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "tmp").mkdir(parents=True)
    (tree / "tmp").chmod(0o1777)
    (tree / "su").write_text("x")
    (tree / "su").chmod(0o4755)
    (tree / "sg").write_text("x")
    (tree / "sg").chmod(0o2711)
    modes = {m.name: m.mode for m in _tar_members(blobs, _uncompressed(blobs, tree))}
    assert modes == {"tmp": 0o1777, "su": 0o4755, "sg": 0o2711}


def test_sockets_are_skipped(blobs: BlobStore, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tree / "s"))
        (tree / "f").write_text("x")
        names = [m.name for m in _tar_members(blobs, _uncompressed(blobs, tree))]
    finally:
        sock.close()
    assert names == ["f"]


def test_xattrs_kept_as_pax_and_overlay_ones_dropped(blobs: BlobStore, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "f").write_text("x")
    if not _user_xattrs_supported(tree / "f"):
        pytest.skip("user.* xattrs not supported on this file system")
    os.setxattr(tree / "f", "user.plain", b"value")
    os.setxattr(tree / "f", "user.binary", b"\xff\x00\x01")
    os.setxattr(tree / "d", "user.overlay.opaque", b"y")
    os.setxattr(tree / "d", "user.overlay.origin", b"junk")
    members = {m.name: m for m in _tar_members(blobs, _uncompressed(blobs, tree))}
    f_headers = members["f"].pax_headers
    assert f_headers["SCHILY.xattr.user.plain"] == "value"
    assert f_headers["SCHILY.xattr.user.binary"].encode("utf-8", "surrogateescape") == (
        b"\xff\x00\x01"
    )
    assert not any("overlay" in k for m in members.values() for k in m.pax_headers)
    assert "d/.wh..wh..opq" in members


def test_opaque_marker_comes_first_in_its_dir(blobs: BlobStore, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "!first").write_text("x")
    (tree / "d" / ".a").write_text("x")
    if not _user_xattrs_supported(tree / "d"):
        pytest.skip("user.* xattrs not supported on this file system")
    os.setxattr(tree / "d", "user.overlay.opaque", b"y")
    names = [m.name for m in _tar_members(blobs, _uncompressed(blobs, tree))]
    assert names == ["d", "d/.wh..wh..opq", "d/!first", "d/.a"]


def test_writing_streams_without_buffering_the_layer(blobs: BlobStore, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    with open(tree / "big", "wb") as f:
        for _ in range(32):
            f.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        write_layer(tree, blobs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compression", list(Compression))
def test_round_trip_restores_the_tree(
    blobs: BlobStore, tmp_path: Path, compression: Compression
) -> None:
    tree = make_tree(tmp_path / "t")
    (tree / "etc" / "passwd").chmod(0o4755)
    (tree / "etc" / "sub").chmod(0o1777)
    os.link(tree / "bin" / "tool", tree / "bin" / "tool2")
    os.mkfifo(tree / "fifo")
    set_times(tree)
    layer = write_layer(tree, blobs, compression=compression)
    out = tmp_path / "out"
    out.mkdir()
    diff_id = extract_layer(blobs, layer.descriptor(), out, mode="apply")
    assert diff_id == layer.diff_id
    assert snapshot(out) == snapshot(tree)
    assert os.stat(out / "bin" / "tool").st_ino == os.stat(out / "bin" / "tool2").st_ino


def test_diff_id_is_same_across_compressions(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    layers = [write_layer(tree, blobs, compression=c) for c in Compression]
    assert len({layer.diff_id for layer in layers}) == 1
    assert len({layer.digest for layer in layers}) == 3
    assert layers[2].digest == layers[2].diff_id  # NONE: the blob is the tar


def test_xattrs_round_trip(blobs: BlobStore, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("x")
    if not _user_xattrs_supported(tree / "f"):
        pytest.skip("user.* xattrs not supported on this file system")
    os.setxattr(tree / "f", "user.binary", b"\xff\x00\x01")
    layer = write_layer(tree, blobs)
    out = tmp_path / "out"
    out.mkdir()
    extract_layer(blobs, layer.descriptor(), out, mode="apply")
    assert os.getxattr(out / "f", "user.binary") == b"\xff\x00\x01"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to other ids needs root")
def test_numeric_ownership_round_trips_as_root(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    os.chown(tree / "etc" / "passwd", 1234, 5678)
    os.chown(tree / "bin" / "sh", 4321, 8765, follow_symlinks=False)
    layer = write_layer(tree, blobs)
    out = tmp_path / "out"
    out.mkdir()
    extract_layer(blobs, layer.descriptor(), out, mode="apply")
    st = os.lstat(out / "etc" / "passwd")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    st = os.lstat(out / "bin" / "sh")
    assert (st.st_uid, st.st_gid) == (4321, 8765)


def test_non_utf8_and_long_names_round_trip(blobs: BlobStore, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    odd = os.fsdecode(b"caf\xe9")
    (tree / odd).write_text("latin-1 name")
    long_dir = tree / ("d" * 120)
    long_dir.mkdir()
    (long_dir / ("f" * 150)).write_text("long")
    (tree / "ünïcode").write_text("utf-8 name")
    set_times(tree)
    layer = write_layer(tree, blobs)
    out = tmp_path / "out"
    out.mkdir()
    extract_layer(blobs, layer.descriptor(), out, mode="apply")
    assert snapshot(out) == snapshot(tree)
    assert (out / odd).read_text() == "latin-1 name"


# ---------------------------------------------------------------------------- verification


def test_corrupt_blob_is_detected_on_extract(blobs: BlobStore, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    layer = _uncompressed(blobs, tree)
    path = blobs.path(layer.digest)
    data = bytearray(path.read_bytes())
    offset = data.index(b"root:x")
    data[offset] = ord("R")  # still a valid tar: only the digest can tell
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DigestMismatch):
        extract_layer(blobs, layer.descriptor(), out, mode="apply")


def test_corrupt_blob_that_breaks_the_tar_reports_digest_mismatch(
    blobs: BlobStore, tmp_path: Path
) -> None:
    layer = _uncompressed(blobs, make_tree(tmp_path / "t"))
    path = blobs.path(layer.digest)
    data = bytearray(path.read_bytes())
    data[148:156] = b"9999999\0"  # first header's checksum: tarfile rejects it
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DigestMismatch):
        extract_layer(blobs, layer.descriptor(), out, mode="apply")


def test_descriptor_size_mismatch_is_refused(blobs: BlobStore, tmp_path: Path) -> None:
    layer = write_layer(make_tree(tmp_path / "t"), blobs)
    wrong = dataclasses.replace(layer.descriptor(), size=layer.size + 1)
    with pytest.raises(LayerError):
        extract_layer(blobs, wrong, tmp_path, mode="apply")


def test_garbage_blob_raises_layer_error(blobs: BlobStore, tmp_path: Path) -> None:
    for data in (b"\x28\xb5\x2f\xfd" + b"junk" * 100, b"\x1f\x8b" + b"junk" * 100):
        digest = blobs.put_bytes(data)
        with pytest.raises(LayerError):
            extract_layer(blobs, Descriptor(MEDIA_OCI_LAYER, digest, len(data)), tmp_path)


def test_unknown_mode_is_refused(blobs: BlobStore, tmp_path: Path) -> None:
    layer = write_layer(make_tree(tmp_path / "t"), blobs)
    with pytest.raises(LayerError):
        extract_layer(blobs, layer.descriptor(), tmp_path, mode="merge")


# ---------------------------------------------------------------------------- hostile tars


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    return outside


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([(member("../evil"), b"x")], id="dotdot"),
        pytest.param([(member("a/../../evil"), b"x")], id="nested-dotdot"),
        pytest.param([(member("/abs/evil"), b"x")], id="absolute"),
        pytest.param(
            [(member("link", tarfile.SYMTYPE, "{outside}"), None), (member("link/evil"), b"x")],
            id="through-absolute-symlink",
        ),
        pytest.param(
            [
                (member("up", tarfile.SYMTYPE, ".."), None),
                (member("up/outside/evil"), b"x"),
            ],
            id="through-relative-symlink",
        ),
        pytest.param(
            [(member("h", tarfile.LNKTYPE, "../outside/secret"), None)], id="hardlink-dotdot"
        ),
        pytest.param(
            [(member("h", tarfile.LNKTYPE, "{outside}/secret"), None)], id="hardlink-absolute"
        ),
        pytest.param(
            [
                (member("l", tarfile.SYMTYPE, "{outside}"), None),
                (member("h", tarfile.LNKTYPE, "l/secret"), None),
            ],
            id="hardlink-through-symlink",
        ),
        pytest.param([(member("f"), b"x"), (member("f/evil"), b"x")], id="through-a-file"),
        pytest.param([(member(".wh.."), b"")], id="whiteout-of-parent"),
    ],
)
def test_hostile_tar_is_refused_and_writes_nothing_outside(
    blobs: BlobStore, tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]
) -> None:
    outside = _outside(tmp_path)
    (outside / "secret").write_text("keep me")
    for info, _ in entries:
        info.linkname = info.linkname.replace("{outside}", str(outside))
    layer = tar_blob(blobs, entries)
    dest = tmp_path / "dest" / "root"
    dest.mkdir(parents=True)
    for mode in ("apply", "overlay"):
        with pytest.raises(LayerError):
            extract_layer(blobs, layer, dest, mode=mode)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "keep me"
    assert not (tmp_path / "dest" / "evil").exists()


def test_symlink_to_outside_is_created_but_never_followed(blobs: BlobStore, tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    layer = tar_blob(
        blobs,
        [(member("link", tarfile.SYMTYPE, str(outside / "target")), None), (member("x"), b"1")],
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_layer(blobs, layer, dest, mode="apply")
    assert os.readlink(dest / "link") == str(outside / "target")
    assert list(outside.iterdir()) == []


def test_file_entry_replaces_symlink_instead_of_writing_through_it(
    blobs: BlobStore, tmp_path: Path
) -> None:
    outside = _outside(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "f").symlink_to(outside / "victim")
    extract_layer(blobs, tar_blob(blobs, [(member("f"), b"data")]), dest, mode="apply")
    assert not (dest / "f").is_symlink()
    assert (dest / "f").read_bytes() == b"data"
    assert list(outside.iterdir()) == []


def test_dir_entry_replaces_symlink_instead_of_following_it(
    blobs: BlobStore, tmp_path: Path
) -> None:
    outside = _outside(tmp_path)
    layer = tar_blob(
        blobs,
        [
            (member("d", tarfile.SYMTYPE, str(outside)), None),
            (member("d/", tarfile.DIRTYPE), None),
            (member("d/inside"), b"x"),
        ],
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_layer(blobs, layer, dest, mode="apply")
    assert not (dest / "d").is_symlink()
    assert (dest / "d" / "inside").read_bytes() == b"x"
    assert list(outside.iterdir()) == []


# ---------------------------------------------------------------------------- apply mode


def test_apply_whiteout_deletes_file_and_dir(blobs: BlobStore, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "etc" / "gone-dir" / "sub").mkdir(parents=True)
    (dest / "etc" / "gone-file").write_text("x")
    (dest / "etc" / "kept").write_text("x")
    layer = tar_blob(blobs, [(member("etc/.wh.gone-dir"), b""), (member("etc/.wh.gone-file"), b"")])
    extract_layer(blobs, layer, dest, mode="apply")
    assert sorted(p.name for p in (dest / "etc").iterdir()) == ["kept"]


def test_apply_whiteout_under_missing_dir_creates_nothing(blobs: BlobStore, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    layer = tar_blob(blobs, [(member("a/b/.wh.c"), b""), (member("x/.wh..wh..opq"), b"")])
    extract_layer(blobs, layer, dest, mode="apply")
    assert list(dest.iterdir()) == []


def test_apply_opaque_keeps_only_this_layers_entries(blobs: BlobStore, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "d" / "sub").mkdir(parents=True)
    (dest / "d" / "old").write_text("lower")
    (dest / "d" / "sub" / "old").write_text("lower")
    (dest / "other").write_text("untouched")
    # The marker comes after siblings here, as some producers write it.
    layer = tar_blob(
        blobs,
        [
            (member("d/", tarfile.DIRTYPE), None),
            (member("d/new"), b"upper"),
            (member("d/sub/", tarfile.DIRTYPE), None),
            (member("d/sub/new"), b"upper"),
            (member("d/.wh..wh..opq"), b""),
        ],
    )
    extract_layer(blobs, layer, dest, mode="apply")
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "d",
        "d/new",
        "d/sub",
        "d/sub/new",
        "other",
    ]


def test_apply_replaces_dir_with_file_and_file_with_dir(blobs: BlobStore, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "was-dir" / "child").mkdir(parents=True)
    (dest / "was-file").write_text("x")
    layer = tar_blob(
        blobs,
        [
            (member("was-dir"), b"now a file"),
            (member("was-file/", tarfile.DIRTYPE), None),
            (member("was-file/inner"), b"y"),
        ],
    )
    extract_layer(blobs, layer, dest, mode="apply")
    assert (dest / "was-dir").read_text() == "now a file"
    assert (dest / "was-file" / "inner").read_text() == "y"


def test_apply_layers_in_order_flattens_an_image(blobs: BlobStore, tmp_path: Path) -> None:
    base = make_tree(tmp_path / "base")
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "passwd").write_text("changed\n")
    set_times(upper)
    dest = tmp_path / "rootfs"
    dest.mkdir()
    for tree in (base, upper):
        extract_layer(blobs, write_layer(tree, blobs).descriptor(), dest, mode="apply")
    assert (dest / "etc" / "passwd").read_text() == "changed\n"
    assert (dest / "bin" / "tool").read_bytes() == (base / "bin" / "tool").read_bytes()


def test_apply_directory_modes_and_mtimes_set_after_children(
    blobs: BlobStore, tmp_path: Path
) -> None:
    tree = tmp_path / "t"
    (tree / "ro").mkdir(parents=True)
    (tree / "ro" / "f").write_text("x")
    set_times(tree)
    (tree / "ro").chmod(0o555)
    try:
        layer = write_layer(tree, blobs)
    finally:
        (tree / "ro").chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    extract_layer(blobs, layer.descriptor(), out, mode="apply")
    st = os.stat(out / "ro")
    assert stat.S_IMODE(st.st_mode) == 0o555
    assert int(st.st_mtime) == FIXED_TIME
    (out / "ro").chmod(0o755)
