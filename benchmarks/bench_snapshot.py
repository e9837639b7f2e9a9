#!/usr/bin/env python3
"""The snapshot step alone: ``write_layer(record=True)`` beside ``tar | zstd -T0 -3``.

Usage: ``python3 benchmarks/bench_snapshot.py [--tree DIR] [--repeat N]``. Without
``--tree`` it makes the biglayer scenario's upper dir (50 x 10 MB random files and
20,000 small files, ~525 MB) in a temporary directory. Each round times what a build
step does after its RUN (write the layer blob with both digests and the layermeta
records, then store the records) and GNU tar piped to zstd writing a file on the same
file system, with the tree in the page cache for both; medians of ``--repeat`` rounds
(default 3). Ratio: tar|zstd seconds over ours (1.0 = same throughput). Peak memory
of a whole build is measured with ``/usr/bin/time -v`` instead (see the README).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cache.layermeta import LayerMeta
from cache.layers import write_layer
from cache.store import BlobStore


def make_biglayer(root: Path) -> None:
    """The upper dir the biglayer scenario's RUN leaves."""
    blobs, small = root / "data" / "blobs", root / "data" / "small"
    blobs.mkdir(parents=True)
    for i in range(1, 51):
        (blobs / f"blob_{i}.bin").write_bytes(os.urandom(10 << 20))
    for d in range(1, 101):
        (small / f"d{d}").mkdir(parents=True)
        for f in range(1, 201):
            (small / f"d{d}" / f"f{f}.txt").write_text(f"record {d}/{f}\n")


def snapshot_seconds(tree: Path, work: Path) -> float:
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    blobs = BlobStore(store)
    start = time.perf_counter()
    layer = write_layer(tree, blobs, record=True)
    assert layer.record is not None
    LayerMeta(store, blobs.tmp_dir).write(layer.diff_id.hex, layer.record)
    return time.perf_counter() - start


def tar_zstd_seconds(tree: Path, work: Path) -> float:
    out = work / "tar.zst"
    start = time.perf_counter()
    cmd = f"tar -C '{tree}' -cf - . | zstd -T0 -3 -q -f -o '{out}'"
    subprocess.run(["sh", "-c", cmd], check=True)
    seconds = time.perf_counter() - start
    out.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="an upper dir (default: make biglayer's)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as tmp:
        work = Path(tmp)
        tree = args.tree
        if tree is None:
            tree = work / "upper"
            make_biglayer(tree)
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append(snapshot_seconds(tree, work))
            theirs.append(tar_zstd_seconds(tree, work))
    mine, peer = statistics.median(ours), statistics.median(theirs)
    print(f"write_layer(record=True) + records: {mine:.2f} s (runs {_runs(ours)})")
    print(f"tar | zstd -T0 -3:                 {peer:.2f} s (runs {_runs(theirs)})")
    print(f"throughput ratio (tar|zstd s / ours): {peer / mine:.2f}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")


def _runs(seconds: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in seconds)


if __name__ == "__main__":
    main()
