#!/usr/bin/env python3
"""Compare layer compressors on a real tree: zstd-3 (our default) against gzip-1 and gzip-6.

Usage: ``python3 benchmarks/bench_compression.py [DIR]`` (default: /usr/lib/python3*).
Builds one uncompressed tar of DIR in memory, then times each compressor over it and
prints throughput (MB/s of input) and ratio.
"""

from __future__ import annotations

import glob
import io
import sys
import tarfile
import time
import zlib
from collections.abc import Callable

import zstandard


def make_tar(root: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname="layer")
    return buf.getvalue()


def gzip_level(level: int) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()

    return run


def zstd_level(level: int) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        return zstandard.ZstdCompressor(level=level).compress(data)

    return run


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else sorted(glob.glob("/usr/lib/python3*"))[0]
    data = make_tar(root)
    mb = len(data) / 1e6
    print(f"input: {root} as tar, {mb:.1f} MB")
    print(f"{'codec':8} {'MB/s':>8} {'ratio':>6}")
    for name, fn in (
        ("zstd-3", zstd_level(3)),
        ("gzip-1", gzip_level(1)),
        ("gzip-6", gzip_level(6)),
    ):
        start = time.perf_counter()
        out = fn(data)
        elapsed = time.perf_counter() - start
        print(f"{name:8} {mb / elapsed:8.0f} {len(data) / len(out):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
