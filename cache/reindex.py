"""Rebuilding a damaged index (``pybuild cache verify --repair``) from what is on disk.

What the index holds and what survives its loss: tags are copied to ``tags.json``
(cache/tagfile.py) on every change, and the images they name are blobs, so the tags
come back (those whose image is still readable). Step records (the build cache), the
last inputs of each step (``--explain``) and the build history (``cache stats``) live
only in the index: they are lost, which costs the next builds the time to run their
steps again, never a wrong result. The damaged file is kept as ``index.db.damaged``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cache.errors import CacheError
from cache.gclock import exclusive_guard
from cache.images import read_images
from cache.index import Index
from cache.store import BlobStore
from cache.tagfile import read_tags, tag_file


@dataclass(frozen=True)
class Rebuilt:
    restored: tuple[str, ...]  # tags put back
    dropped: tuple[str, ...]  # tags whose image is gone or unreadable, or malformed
    aside: Path  # where the damaged index was moved

    def lines(self) -> list[str]:
        lines = [
            f"rebuilt the index from {self.aside.parent / 'tags.json'}: "
            f"{len(self.restored)} tags restored; the damaged index is at {self.aside}",
            "cached build steps and build history were lost: the next builds run their steps again",
        ]
        lines += [
            f"dropped tag {name}: its image is missing or unreadable" for name in self.dropped
        ]
        return lines


def rebuild_index(root: Path, blobs: BlobStore) -> Rebuilt:
    """Move the damaged index aside and make a new one holding the readable tags.

    Waits for running builds (StoreLocked after a minute), as repair does.
    """
    with exclusive_guard(root):
        aside = root / "index.db.damaged"
        for suffix in ("", "-wal", "-shm"):
            current = Path(f"{root / 'index.db'}{suffix}")
            if current.exists():
                os.replace(current, Path(f"{aside}{suffix}"))
            else:
                Path(f"{aside}{suffix}").unlink(missing_ok=True)
        tags, dropped = read_tags(root)
        if not tag_file(root).exists():
            dropped.append(f"(all: there is no {tag_file(root)})")
        keep = []
        for name, digest in tags:
            try:
                read_images(blobs, digest)
            except CacheError:
                dropped.append(name)
                continue
            keep.append((name, digest))
        with Index(root) as index:
            index.restore_tags(keep)
        return Rebuilt(tuple(n for n, _ in keep), tuple(dropped), aside)
