"""UnpackedLayers: one overlay lower dir per diff_id, placed atomically."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from cache.digest import sha256_bytes
from cache.errors import CacheError, DigestMismatch
from cache.layers import LayerBlob, write_layer
from cache.store import BlobStore, force_rmtree
from cache.unpacked import UnpackedLayers


@pytest.fixture
def blobs(store_root: Path) -> BlobStore:
    return BlobStore(store_root)


def _layer(blobs: BlobStore, tmp_path: Path, content: str = "hello") -> LayerBlob:
    tree = tmp_path / f"tree-{content}"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "greeting").write_text(content)
    return write_layer(tree, blobs)


def test_get_is_none_until_ensured(blobs: BlobStore, tmp_path: Path) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    assert layers.get(layer.diff_id) is None
    path = layers.ensure(layer.descriptor(), layer.diff_id)
    assert path == blobs.root / "layers" / layer.diff_id.hex
    assert layers.get(layer.diff_id) == path
    assert (path / "etc" / "greeting").read_text() == "hello"
    assert path.stat().st_mode & 0o755 == 0o755


def test_ensure_twice_reuses_the_dir(blobs: BlobStore, tmp_path: Path) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    first = layers.ensure(layer.descriptor(), layer.diff_id)
    inode = (first / "etc" / "greeting").stat().st_ino
    assert layers.ensure(layer.descriptor(), layer.diff_id) == first
    assert (first / "etc" / "greeting").stat().st_ino == inode  # not unpacked again


def test_ensure_unpacks_again_a_layer_with_an_added_file(blobs: BlobStore, tmp_path: Path) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    first = layers.ensure(layer.descriptor(), layer.diff_id)
    (first / "marker").write_text("planted")
    assert layers.check(layer.diff_id, first) is not None
    assert layers.ensure(layer.descriptor(), layer.diff_id) == first
    assert not (first / "marker").exists()
    assert layers.check(layer.diff_id, first) is None


def test_ensure_unpacks_again_a_layer_whose_file_was_edited_with_its_times_kept(
    blobs: BlobStore, tmp_path: Path
) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    path = layers.ensure(layer.descriptor(), layer.diff_id)
    greeting = path / "etc" / "greeting"
    st = greeting.stat()
    greeting.write_text("HELLO")  # same size
    os.utime(greeting, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime
    mismatch = layers.check(layer.diff_id, path)
    assert mismatch is not None and mismatch.changed == ("etc/greeting",)
    layers.ensure(layer.descriptor(), layer.diff_id)
    assert greeting.read_text() == "hello"


def test_a_layer_unpacked_without_a_manifest_is_unpacked_again(
    blobs: BlobStore, tmp_path: Path
) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    path = layers.ensure(layer.descriptor(), layer.diff_id)
    layers.meta.forget(layer.diff_id.hex)  # as an older pybuild left it
    assert layers.check(layer.diff_id, path) is not None
    layers.ensure(layer.descriptor(), layer.diff_id)
    assert layers.check(layer.diff_id, path) is None


def test_a_moved_but_unchanged_layer_passes_the_full_check_and_is_kept(
    blobs: BlobStore, tmp_path: Path
) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    path = layers.ensure(layer.descriptor(), layer.diff_id)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy, symlinks=True)
    shutil.copystat(path, copy)
    force_rmtree(path)
    os.rename(copy, path)  # new inodes and ctimes, same content: as a copied store
    inode = (path / "etc" / "greeting").stat().st_ino
    assert not layers.meta.fingerprint_matches(layer.diff_id.hex, path)
    layers.ensure(layer.descriptor(), layer.diff_id)
    assert (path / "etc" / "greeting").stat().st_ino == inode
    assert layers.meta.fingerprint_matches(layer.diff_id.hex, path)


def test_ensure_with_wrong_diff_id_places_nothing(blobs: BlobStore, tmp_path: Path) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    wrong = sha256_bytes(b"not the diff id")
    with pytest.raises(DigestMismatch):
        layers.ensure(layer.descriptor(), wrong)
    assert layers.get(wrong) is None
    assert list(blobs.tmp_dir.iterdir()) == []


def test_ensure_from_many_threads_extracts_once(blobs: BlobStore, tmp_path: Path) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    results: list[Path] = []

    def work() -> None:
        results.append(layers.ensure(layer.descriptor(), layer.diff_id))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert len(results) == 6
    assert list(blobs.tmp_dir.iterdir()) == []


def test_adopt_moves_the_dir_into_place(blobs: BlobStore, tmp_path: Path) -> None:
    layers = UnpackedLayers(blobs)
    src = blobs.tmp_dir / "upper"
    (src / "x").mkdir(parents=True)
    diff_id = sha256_bytes(b"some layer")
    path = layers.adopt(diff_id, src)
    assert path == layers.get(diff_id)
    assert (path / "x").is_dir()
    assert not src.exists()


def test_adopt_when_present_deletes_src(blobs: BlobStore, tmp_path: Path) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    placed = layers.ensure(layer.descriptor(), layer.diff_id)
    src = blobs.tmp_dir / "upper"
    (src / "other").mkdir(parents=True)
    assert layers.adopt(layer.diff_id, src) == placed
    assert not src.exists()
    assert not (placed / "other").exists()


def test_adopt_across_filesystems_raises_cache_error(blobs: BlobStore, tmp_path: Path) -> None:
    layers = UnpackedLayers(blobs)
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == blobs.root.stat().st_dev:
        pytest.skip("no second file system (/dev/shm) to move from")
    src = shm / f"pybuild-test-{tmp_path.name}"
    src.mkdir()
    try:
        with pytest.raises(CacheError) as info:
            layers.adopt(sha256_bytes(b"x"), src)
        assert info.value.hint
    finally:
        src.rmdir()


def test_remove_deletes_and_tolerates_missing(blobs: BlobStore, tmp_path: Path) -> None:
    layers = UnpackedLayers(blobs)
    layer = _layer(blobs, tmp_path)
    layers.ensure(layer.descriptor(), layer.diff_id)
    layers.remove(layer.diff_id)
    assert layers.get(layer.diff_id) is None
    layers.remove(layer.diff_id)
    assert list(blobs.tmp_dir.iterdir()) == []
