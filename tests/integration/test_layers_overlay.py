"""Layers against a real overlayfs: upper-dir whiteouts to OCI and back to lower dirs."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from cache.extract import extract_layer
from cache.layers import Compression, LayerBlob, write_layer
from cache.store import BlobStore
from cache.unpacked import UnpackedLayers

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: overlay mounts, mknod whiteouts, trusted.* xattrs"
    ),
]


def _mount(lowers: list[Path], merged: Path, upper: Path | None = None) -> None:
    opts = "lowerdir=" + ":".join(str(p) for p in lowers)
    if upper is not None:
        work = upper.parent / (upper.name + "-work")
        work.mkdir(exist_ok=True)
        opts += f",upperdir={upper},workdir={work}"
    merged.mkdir(exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here: {result.stderr.strip()}")


def _umount(merged: Path) -> None:
    subprocess.run(["umount", str(merged)], check=True)


def _view(root: Path) -> dict[str, tuple[int, bytes]]:
    """What a user sees in a tree: type and content of every path."""
    out = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            st = os.lstat(path)
            body = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), body)
    return out


@pytest.fixture
def blobs(store_root: Path) -> BlobStore:
    return BlobStore(store_root)


def _run_container(tmp_path: Path, upper: Path) -> Path:
    """Make a lower dir; through an overlay on it, delete and replace things in ``upper``."""
    lower = tmp_path / "lower"
    (lower / "dir" / "sub").mkdir(parents=True)
    (lower / "dir" / "old").write_text("lower")
    (lower / "dir" / "sub" / "deep").write_text("lower")
    (lower / "gone").write_text("lower")
    (lower / "keep").write_text("lower")
    upper.mkdir()
    merged = tmp_path / "merged"
    _mount([lower], merged, upper)
    try:
        (merged / "gone").unlink()
        shutil.rmtree(merged / "dir")
        (merged / "dir").mkdir()
        (merged / "dir" / "new").write_text("upper")
        (merged / "added").write_text("upper")
        os.mknod(merged / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    finally:
        _umount(merged)
    return lower


@pytest.fixture
def changed(tmp_path: Path) -> tuple[Path, Path]:
    """A lower dir and the upper dir of a container that deleted and replaced things."""
    upper = tmp_path / "upper"
    return _run_container(tmp_path, upper), upper


def _members(blobs: BlobStore, layer: LayerBlob) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blobs.read_bytes(layer.digest))) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_upper_dir_whiteouts_become_oci_whiteouts(
    blobs: BlobStore, changed: tuple[Path, Path]
) -> None:
    _, upper = changed
    members = _members(blobs, write_layer(upper, blobs, compression=Compression.NONE))
    assert members[".wh.gone"].isreg() and members[".wh.gone"].size == 0
    assert members["dir"].isdir()
    assert members["dir/.wh..wh..opq"].isreg()
    assert members["dir/new"].isreg()
    assert members["null"].ischr() and (members["null"].devmajor, members["null"].devminor) == (
        1,
        3,
    )
    assert "gone" not in members
    assert not any("overlay" in k for m in members.values() for k in m.pax_headers)


def test_overlay_extraction_restores_lower_dir_form(
    blobs: BlobStore, changed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, upper = changed
    layer = write_layer(upper, blobs)
    out = tmp_path / "out"
    out.mkdir()
    assert extract_layer(blobs, layer.descriptor(), out, mode="overlay") == layer.diff_id
    st = os.lstat(out / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(out / "dir", "trusted.overlay.opaque") == b"y"
    assert os.lstat(out / "null").st_rdev == os.makedev(1, 3)
    # Writing it again gives the same layer: the two forms convert losslessly.
    assert write_layer(out, blobs).diff_id == layer.diff_id


def test_extracted_layers_stack_as_overlay_lowers(
    blobs: BlobStore, changed: tuple[Path, Path], tmp_path: Path
) -> None:
    lower, upper = changed
    layers = UnpackedLayers(blobs)
    dirs = []
    for tree in (upper, lower):  # top first, as lowerdir lists them
        layer = write_layer(tree, blobs)
        dirs.append(layers.ensure(layer.descriptor(), layer.diff_id))
    merged = tmp_path / "view"
    _mount(dirs, merged)
    try:
        view = _view(merged)
    finally:
        _umount(merged)
    assert sorted(view) == ["added", "dir", "dir/new", "keep", "null"]
    assert view["dir/new"][1] == b"upper"


def test_apply_mode_flattens_to_the_merged_view(
    blobs: BlobStore, changed: tuple[Path, Path], tmp_path: Path
) -> None:
    lower, upper = changed
    expected_root = tmp_path / "expected"
    _mount([upper, lower], expected_root)
    try:
        expected = _view(expected_root)
    finally:
        _umount(expected_root)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    for tree in (lower, upper):  # base first, as an image lists its layers
        layer = write_layer(tree, blobs, compression=Compression.GZIP)
        extract_layer(blobs, layer.descriptor(), rootfs, mode="apply")
    assert _view(rootfs) == expected


def test_adopt_upper_dir_as_unpacked_layer(blobs: BlobStore, tmp_path: Path) -> None:
    upper = blobs.tmp_dir / "upper"  # snapshots live on the store's file system
    lower = _run_container(tmp_path, upper)
    layer = write_layer(upper, blobs)
    placed = UnpackedLayers(blobs).adopt(layer.diff_id, upper)
    assert not upper.exists()
    merged = tmp_path / "view"
    _mount([placed, lower], merged)
    try:
        assert sorted(_view(merged)) == ["added", "dir", "dir/new", "keep", "null"]
    finally:
        _umount(merged)
