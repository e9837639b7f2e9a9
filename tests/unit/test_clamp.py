"""cache.clamp: a layer's file times clamped to SOURCE_DATE_EPOCH when the image is
assembled (BuildKit docs/build-repro.md "SOURCE_DATE_EPOCH", ``rewrite-timestamp``)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from cache.clamp import clamp_layer, sweep_memos
from cache.digest import Digest
from cache.layers import Compression, write_layer
from cache.oci import Descriptor
from cache.store import BlobStore

EPOCH = 1_700_000_000
OLD = 1_000_000_000


@pytest.fixture
def blobs(store_root: Path) -> BlobStore:
    return BlobStore(store_root)


def _tree(root: Path, mtime: float) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "new.txt").write_text("new")
    (root / "app" / "old.txt").write_text("old")
    os.link(root / "app" / "new.txt", root / "app" / "hard")
    os.symlink("new.txt", root / "app" / "link")
    os.setxattr(root / "app" / "new.txt", "user.bin", b"\xff\x00\xfe")
    for path in ("app/new.txt", "app/link", "app"):
        os.utime(root / path, (mtime, mtime), follow_symlinks=False)
    os.utime(root / "app" / "old.txt", (OLD, OLD))
    return root


def _layer(
    blobs: BlobStore, root: Path, how: Compression = Compression.ZSTD
) -> tuple[Descriptor, Digest]:
    blob = write_layer(root, blobs, compression=how)
    return blob.descriptor(), blob.diff_id


def _members(blobs: BlobStore, desc: Descriptor) -> dict[str, tarfile.TarInfo]:
    data = blobs.read_bytes(desc.digest)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(data), errors="surrogateescape") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_times_after_the_epoch_become_the_epoch_and_older_ones_stay(
    blobs: BlobStore, tmp_path: Path
) -> None:
    desc, diff_id = _layer(blobs, _tree(tmp_path / "t", EPOCH + 5000))
    clamped = clamp_layer(blobs, desc, diff_id, EPOCH)
    members = _members(blobs, clamped.layer)
    assert members["app/new.txt"].mtime == EPOCH
    assert members["app/link"].mtime == EPOCH
    assert members["app"].mtime == EPOCH
    assert members["app/old.txt"].mtime == OLD
    assert clamped.layer.digest != desc.digest and clamped.diff_id != diff_id
    assert clamped.layer.media_type == desc.media_type


def test_clamping_keeps_contents_links_owners_and_binary_xattrs(
    blobs: BlobStore, tmp_path: Path
) -> None:
    desc, diff_id = _layer(blobs, _tree(tmp_path / "t", EPOCH + 5000))
    before = _members(blobs, desc)
    after = _members(blobs, clamp_layer(blobs, desc, diff_id, EPOCH).layer)
    assert list(after) == list(before)
    for name, m in before.items():
        c = after[name]
        assert (c.type, c.mode, c.uid, c.gid, c.size, c.linkname) == (
            m.type, m.mode, m.uid, m.gid, m.size, m.linkname,
        )  # fmt: skip
        assert c.pax_headers == m.pax_headers
    assert after["app/hard"].isreg() and after["app/new.txt"].islnk()  # sorted: hard first
    assert (
        after["app/hard"].pax_headers["SCHILY.xattr.user.bin"].encode("utf-8", "surrogateescape")
        == b"\xff\x00\xfe"
    )


def test_layers_made_at_different_times_clamp_to_the_same_digest(
    blobs: BlobStore, tmp_path: Path
) -> None:
    one = _layer(blobs, _tree(tmp_path / "a", EPOCH + 10))
    two = _layer(blobs, _tree(tmp_path / "b", EPOCH + 99999))
    assert one[0].digest != two[0].digest
    first = clamp_layer(blobs, *one, EPOCH)
    second = clamp_layer(blobs, *two, EPOCH)
    assert first == second


@pytest.mark.parametrize("how", [Compression.GZIP, Compression.NONE])
def test_clamping_keeps_the_layers_compression(
    blobs: BlobStore, tmp_path: Path, how: Compression
) -> None:
    desc, diff_id = _layer(blobs, _tree(tmp_path / "t", EPOCH + 1), how)
    clamped = clamp_layer(blobs, desc, diff_id, EPOCH)
    assert clamped.layer.media_type == desc.media_type
    head = blobs.read_bytes(clamped.layer.digest)[:2]
    assert (head == b"\x1f\x8b") == (how is Compression.GZIP)


def test_a_layer_with_nothing_to_clamp_is_returned_as_it_is(
    blobs: BlobStore, tmp_path: Path
) -> None:
    desc, diff_id = _layer(blobs, _tree(tmp_path / "t", OLD))
    clamped = clamp_layer(blobs, desc, diff_id, EPOCH)
    assert (clamped.layer, clamped.diff_id) == (desc, diff_id)


def test_a_clamped_layer_is_remembered_and_made_again_once_its_blob_is_gone(
    blobs: BlobStore, tmp_path: Path
) -> None:
    desc, diff_id = _layer(blobs, _tree(tmp_path / "t", EPOCH + 1))
    first = clamp_layer(blobs, desc, diff_id, EPOCH)
    made = os.stat(blobs.path(first.layer.digest)).st_mtime_ns
    assert clamp_layer(blobs, desc, diff_id, EPOCH) == first
    assert os.stat(blobs.path(first.layer.digest)).st_mtime_ns == made  # not written again
    blobs.remove(first.layer.digest)
    assert clamp_layer(blobs, desc, diff_id, EPOCH) == first
    assert blobs.has(first.layer.digest)


def test_sweep_removes_records_whose_clamped_blob_was_pruned(
    blobs: BlobStore, tmp_path: Path
) -> None:
    kept = _layer(blobs, _tree(tmp_path / "a", EPOCH + 1))
    gone = _layer(blobs, _tree(tmp_path / "b", EPOCH + 2))
    clamp_layer(blobs, *kept, EPOCH)
    clamp_layer(blobs, *kept, EPOCH + 1)  # another epoch: another record
    blobs.remove(clamp_layer(blobs, *gone, EPOCH - 1).layer.digest)
    assert sweep_memos(blobs) == 1
    records = sorted(p.relative_to(blobs.root / "clamped") for p in
                     (blobs.root / "clamped").glob("*/*/*"))  # fmt: skip
    assert [r.parts[0] for r in records] == [str(EPOCH), str(EPOCH + 1)]
    assert not (blobs.root / "clamped" / str(EPOCH - 1)).exists()
