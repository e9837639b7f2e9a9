#!/usr/bin/env python3
"""Cost of checking an unpacked layer before use, and of the full check ``cache verify`` does.

Usage: ``python3 benchmarks/bench_layer_check.py [FILES]`` (default 5000). Makes a layer
of FILES small files in 50 dirs, unpacks it into a scratch store, then times the
fingerprint check every build or run does per base layer (``UnpackedLayers.ensure`` on
an intact layer) and the full manifest check (``UnpackedLayers.check``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cache.layers import write_layer
from cache.store import BlobStore
from cache.unpacked import UnpackedLayers


def _best(fn: object, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        for i in range(count):
            d = tree / f"dir{i % 50}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"file{i}").write_bytes(b"x" * (i % 4096))
        blobs = BlobStore(Path(scratch) / "store")
        layer = write_layer(tree, blobs)
        layers = UnpackedLayers(blobs)
        start = time.perf_counter()
        layers.ensure(layer.descriptor(), layer.diff_id)
        unpack = time.perf_counter() - start
        cheap = _best(lambda: layers.ensure(layer.descriptor(), layer.diff_id))
        path = blobs.root / "layers" / layer.diff_id.hex
        full = _best(lambda: layers.check(layer.diff_id, path), runs=3)
    print(
        f"{count} files: unpack and record {unpack * 1000:.0f} ms, "
        f"check before use {cheap * 1000:.1f} ms, full check {full * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
