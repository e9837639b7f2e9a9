"""cache.convert: a layer in another compression, converted once per (diff_id, target)."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import pytest
import zstandard

import cache.convert
from cache.convert import convert_layer, memo_path
from cache.digest import Digest, sha256_bytes
from cache.errors import BlobNotFound, DigestMismatch, LayerError
from cache.layers import Compression
from cache.oci import (
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_ZSTD,
    Descriptor,
)
from cache.store import BlobStore
from tests.archive_samples import compress, layer

TAR = layer({"etc/motd": b"hello\n" * 1000, "bin/tool": os.urandom(4096)})
DIFF_ID = sha256_bytes(TAR)
MEDIA = {"none": MEDIA_OCI_LAYER, "gzip": MEDIA_OCI_LAYER_GZIP, "zstd": MEDIA_OCI_LAYER_ZSTD}


@pytest.fixture
def blobs(store_root: Path) -> BlobStore:
    return BlobStore(store_root)


def put(blobs: BlobStore, how: str, data: bytes = TAR) -> Descriptor:
    blob = compress(data, how)
    annotations = (("org.example.note", "kept"),)
    return Descriptor(MEDIA[how], blobs.put_bytes(blob), len(blob), annotations)


def unpacked(blobs: BlobStore, desc: Descriptor) -> bytes:
    data = blobs.read_bytes(desc.digest)
    if desc.media_type == MEDIA_OCI_LAYER_GZIP:
        return gzip.decompress(data)
    if desc.media_type == MEDIA_OCI_LAYER_ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


@pytest.mark.parametrize("source", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("target", list(Compression))
def test_conversion_keeps_the_tar_and_gives_the_target_media_type(
    blobs: BlobStore, source: str, target: Compression
) -> None:
    original = put(blobs, source)
    converted = convert_layer(blobs, original, DIFF_ID, target)
    assert converted.media_type == target.media_type or converted == original
    assert unpacked(blobs, converted) == TAR
    assert converted.size == blobs.size(converted.digest)
    assert converted.annotations == original.annotations


@pytest.mark.parametrize("how", ["none", "gzip", "zstd"])
def test_layer_already_in_the_target_compression_is_returned_as_is(
    blobs: BlobStore, how: str
) -> None:
    original = put(blobs, how)
    target = {"none": Compression.NONE, "gzip": Compression.GZIP, "zstd": Compression.ZSTD}[how]
    assert convert_layer(blobs, original, DIFF_ID, target) is original
    assert not (blobs.root / "converted").exists()


def test_conversion_is_recorded_and_the_second_call_does_no_work(
    blobs: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = put(blobs, "zstd")
    first = convert_layer(blobs, original, DIFF_ID, Compression.GZIP)
    record = json.loads(memo_path(blobs, DIFF_ID, Compression.GZIP).read_text())
    assert record == {"digest": str(first.digest), "size": first.size}
    mtime = blobs.path(first.digest).stat().st_mtime_ns

    def no_recompression(*_args: object) -> None:
        raise AssertionError("recompressed a layer that was already converted")

    monkeypatch.setattr(cache.convert, "make_compressor", no_recompression)
    assert convert_layer(blobs, original, DIFF_ID, Compression.GZIP) == first
    assert blobs.path(first.digest).stat().st_mtime_ns == mtime


def test_record_whose_blob_was_pruned_is_converted_again(blobs: BlobStore) -> None:
    original = put(blobs, "zstd")
    first = convert_layer(blobs, original, DIFF_ID, Compression.GZIP)
    blobs.remove(first.digest)
    assert convert_layer(blobs, original, DIFF_ID, Compression.GZIP) == first
    assert blobs.has(first.digest)


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"digest": "sha256:zz", "size": 1}'])
def test_unreadable_record_is_rewritten(blobs: BlobStore, content: bytes) -> None:
    original = put(blobs, "zstd")
    memo = memo_path(blobs, DIFF_ID, Compression.GZIP)
    memo.parent.mkdir(parents=True)
    memo.write_bytes(content)
    converted = convert_layer(blobs, original, DIFF_ID, Compression.GZIP)
    assert json.loads(memo.read_text())["digest"] == str(converted.digest)


def test_uncompressed_target_is_stored_under_the_diff_id_without_a_record(
    blobs: BlobStore,
) -> None:
    converted = convert_layer(blobs, put(blobs, "zstd"), DIFF_ID, Compression.NONE)
    assert converted.digest == DIFF_ID and converted.media_type == MEDIA_OCI_LAYER
    assert not (blobs.root / "converted").exists()


def test_gzip_output_is_deterministic_across_stores(tmp_path: Path) -> None:
    results = []
    for name in ("a", "b"):
        blobs = BlobStore(tmp_path / name)
        converted = convert_layer(blobs, put(blobs, "zstd"), DIFF_ID, Compression.GZIP)
        results.append(blobs.read_bytes(converted.digest))
    assert results[0] == results[1]
    assert results[0][4:8] == b"\0\0\0\0"  # gzip header mtime 0


def test_wrong_diff_id_stores_nothing(blobs: BlobStore) -> None:
    original = put(blobs, "zstd")
    before = set(blobs.digests())
    wrong = sha256_bytes(b"another tar")
    for target in (Compression.GZIP, Compression.NONE):
        with pytest.raises(DigestMismatch):
            convert_layer(blobs, original, wrong, target)
    assert set(blobs.digests()) == before
    assert not memo_path(blobs, wrong, Compression.GZIP).exists()


def test_truncated_gzip_is_a_layer_error_and_truncated_zstd_a_mismatch(
    blobs: BlobStore,
) -> None:
    blob = compress(TAR, "gzip")[:-20]
    desc = Descriptor(MEDIA_OCI_LAYER_GZIP, blobs.put_bytes(blob), len(blob))
    with pytest.raises(LayerError, match="not a valid gzip"):
        convert_layer(blobs, desc, DIFF_ID, Compression.ZSTD)
    # zstd's reader ends quietly at a cut; the tar then does not match its diff_id
    blob = compress(TAR, "zstd")[:-20]
    desc = Descriptor(MEDIA_OCI_LAYER_ZSTD, blobs.put_bytes(blob), len(blob))
    with pytest.raises(DigestMismatch, match="diff_id"):
        convert_layer(blobs, desc, DIFF_ID, Compression.GZIP)


def test_corrupted_blob_in_the_store_is_a_digest_mismatch(blobs: BlobStore) -> None:
    original = put(blobs, "zstd")
    path = blobs.path(original.digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        convert_layer(blobs, original, DIFF_ID, Compression.GZIP)


def test_missing_blob_and_wrong_size_are_errors(blobs: BlobStore) -> None:
    missing = Descriptor(MEDIA_OCI_LAYER_ZSTD, Digest("sha256", "0" * 64), 10)
    with pytest.raises(BlobNotFound):
        convert_layer(blobs, missing, DIFF_ID, Compression.GZIP)
    original = put(blobs, "zstd")
    lying = Descriptor(original.media_type, original.digest, original.size + 1)
    with pytest.raises(LayerError, match="descriptor says"):
        convert_layer(blobs, lying, DIFF_ID, Compression.GZIP)
