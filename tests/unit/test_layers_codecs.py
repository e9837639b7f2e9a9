"""cache.layers codecs: make_compressor and open_decompressed."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from cache.layers import Compression, detect_compression, make_compressor, open_decompressed

DATA = b"layer bytes " * 50_000 + os.urandom(10_000)


def packed(compression: Compression, chunks: list[bytes]) -> bytes:
    c = make_compressor(compression)
    return b"".join(c.compress(chunk) for chunk in chunks) + c.flush()


@pytest.mark.parametrize("compression", list(Compression))
def test_compressor_output_round_trips_through_open_decompressed(
    compression: Compression,
) -> None:
    blob = packed(compression, [DATA[:1000], DATA[1000:]])
    assert detect_compression(blob[:8]) is compression
    with open_decompressed(io.BytesIO(blob), compression) as reader:
        assert reader.read() == DATA


@pytest.mark.parametrize("compression", list(Compression))
def test_compressor_is_deterministic_whatever_the_chunking(compression: Compression) -> None:
    assert packed(compression, [DATA]) == packed(compression, [DATA[:7], DATA[7:]])


def test_gzip_is_standard_gzip_with_mtime_zero() -> None:
    blob = packed(Compression.GZIP, [DATA])
    assert gzip.decompress(blob) == DATA
    assert blob[4:8] == b"\0\0\0\0"


@pytest.mark.parametrize("compression", list(Compression))
def test_closing_the_reader_leaves_the_raw_stream_open(compression: Compression) -> None:
    raw = io.BytesIO(packed(compression, [DATA]) + b"")
    with open_decompressed(raw, compression) as reader:
        reader.read(10)
    assert not raw.closed
    raw.read()


def test_multi_member_gzip_and_multi_frame_zstd_are_read_whole() -> None:
    two_gzip = gzip.compress(b"one ", mtime=0) + gzip.compress(b"two", mtime=0)
    with open_decompressed(io.BytesIO(two_gzip), Compression.GZIP) as reader:
        assert reader.read() == b"one two"
    z = zstandard.ZstdCompressor()
    two_zstd = z.compress(b"one ") + z.compress(b"two")
    with open_decompressed(io.BytesIO(two_zstd), Compression.ZSTD) as reader:
        assert reader.read() == b"one two"


def test_corrupt_gzip_raises_a_format_error() -> None:
    from cache.layers import FORMAT_ERRORS

    blob = bytearray(packed(Compression.GZIP, [DATA]))
    blob[20:40] = b"\xff" * 20
    with (
        pytest.raises(FORMAT_ERRORS),
        open_decompressed(io.BytesIO(bytes(blob)), Compression.GZIP) as reader,
    ):
        reader.read()
