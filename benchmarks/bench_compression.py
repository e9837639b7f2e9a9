#!/usr/bin/env python3
"""Compare layer compressors on a real tree: zstd-3 (our default) against the gzip writers.

Usage: ``python3 benchmarks/bench_compression.py [DIR]`` (default: /usr/lib/python3*).
Builds one uncompressed tar of DIR in memory, then times each compressor over it and
prints throughput (MB/s of input) and ratio. The gzip candidates are stdlib zlib,
python-isal (``isal``) and ``zlib-ng``; the fastest one that still compresses about as
well as zlib level 1 is the one ``cache.layers`` writes gzip with.
"""

from __future__ import annotations

import glob
import io
import sys
import tarfile
import time
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import zstandard
from isal import isal_zlib

from cache.layers import Compression, make_compressor

try:
    from zlib_ng import zlib_ng
except ImportError:  # the "bench" extra: pip install -e '.[bench]'
    zlib_ng = None


def make_tar(root: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname="layer")
    return buf.getvalue()


class _Deflater(Protocol):
    def compressobj(self, level: int, method: int, wbits: int, /) -> Any: ...


def gzip_level(module: _Deflater, level: int) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        c = module.compressobj(level, zlib.DEFLATED, 31)
        return bytes(c.compress(data) + c.flush())

    return run


def pybuild_gzip(data: bytes) -> bytes:
    """What pybuild writes gzip layers with, fed 64 KiB at a time as tarfile does."""
    c = make_compressor(Compression.GZIP)
    step = 1 << 16
    return b"".join(c.compress(data[i : i + step]) for i in range(0, len(data), step)) + c.flush()


def zstd_level(level: int) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        return zstandard.ZstdCompressor(level=level).compress(data)

    return run


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else sorted(glob.glob("/usr/lib/python3*"))[0]
    data = make_tar(root)
    mb = len(data) / 1e6
    print(f"input: {root} as tar, {mb:.1f} MB")
    print(f"{'codec':17} {'MB/s':>8} {'ratio':>6}")
    codecs = [
        ("zstd-3", zstd_level(3)),
        ("gzip-1 (zlib)", gzip_level(zlib, 1)),
        ("gzip-6 (zlib)", gzip_level(zlib, 6)),
        ("gzip-1 (isal)", gzip_level(isal_zlib, 1)),
        ("gzip-2 (isal)", gzip_level(isal_zlib, 2)),
        ("gzip (pybuild)", pybuild_gzip),
    ]
    if zlib_ng is not None:
        codecs += [
            ("gzip-1 (zlib-ng)", gzip_level(zlib_ng, 1)),
            ("gzip-6 (zlib-ng)", gzip_level(zlib_ng, 6)),
        ]
    else:
        print("zlib-ng is not installed (pip install -e '.[bench]'): skipped")
    for name, fn in codecs:
        # Best of three: this machine is shared, and one slow run says little.
        elapsed = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            out = fn(data)
            elapsed = min(elapsed, time.perf_counter() - start)
        print(f"{name:17} {mb / elapsed:8.0f} {len(data) / len(out):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
