#!/usr/bin/env python3
"""What creating a step's files costs right after a big removal, with and without
``fstree.spread`` (the store's ``tmp`` marked ``chattr +T``).

Usage: ``python3 -m benchmarks.bench_spread [--dir DIR] [--removed 20000] [--files 5000]
[--repeat 3]``. In two parent dirs under DIR (default: a temp dir under /var/tmp), one
plain and one marked, each round makes a dir of REMOVED empty files (a layer or store
about to go), removes it, syncs, then times making FILES files of 10 KB in a new dir
beside it (the next step's upper dir), 50 to a subdirectory. Prints the median and the
minimum microseconds per file of each parent. On ext4 without a journal, the plain
parent's new files land among the inodes just freed, each of which ext4 checks and
skips for 30 s or more (``recently_deleted``). The figures are never a test assertion.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fstree.spread import spread_children

_DATA = b"x" * 10_000


def _make(top: Path, files: int, data: bytes) -> float:
    """Seconds to make ``files`` files of ``data`` under new dir ``top``."""
    began = time.perf_counter()
    top.mkdir()
    for i in range(files):
        sub = top / f"d{i // 50}"
        if i % 50 == 0:
            sub.mkdir()
        fd = os.open(sub / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    return time.perf_counter() - began


def _round(parent: Path, n: int, removed: int, files: int) -> float:
    """Microseconds per file of a new step dir made just after a removal."""
    gone = parent / f"gone-{n}"
    _make(gone, removed, b"")
    shutil.rmtree(gone)
    os.sync()
    return _make(parent / f"step-{n}", files, _DATA) / files * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to work (default: under /var/tmp)")
    parser.add_argument("--removed", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-spread-", dir=args.dir or "/var/tmp"))
    try:
        plain, marked = work / "plain", work / "marked"
        plain.mkdir()
        marked.mkdir()
        if not spread_children(marked):
            print(f"the filesystem of {work} has no FS_TOPDIR_FL: both parents are the same")
        times: dict[str, list[float]] = {"plain tmp": [], "tmp marked +T": []}
        for n in range(args.repeat):
            times["plain tmp"].append(_round(plain, n, args.removed, args.files))
            times["tmp marked +T"].append(_round(marked, n, args.removed, args.files))
        print(f"{args.files} files of 10 KB made just after removing {args.removed} files:")
        for name, runs in times.items():
            print(
                f"  {name:14s} median {statistics.median(runs):7.0f} us/file"
                f"   min {min(runs):7.0f} us/file"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
