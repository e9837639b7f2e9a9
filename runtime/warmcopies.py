"""Merged copies kept between steps, so the next step on top of one need not copy again.

The copy snapshotter (:mod:`runtime.snapshot`) merges a step's layers into a fresh tree
and, after the step, diffs it into the step's upper dir. That tree *is* the merged view
of those layers plus the upper, which is the next step's root when the upper becomes
its top layer (the store renames the upper into place, keeping its inode). Instead of
deleting it (as long as copying it, for a big root), the snapshotter parks it here under
the identity of that layer stack; the next ``prepare`` of exactly that stack takes it.
No stored layer is ever written: the parked tree is a copy of its own.

A build opens one pool (:func:`keep`) in a locked temp dir of its store: what is parked
goes with that dir when the build ends, and a killed build's is swept with the rest.
Only a few trees are kept (:data:`LIMIT`), the least recently parked deleted first.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fstree.tree import remove_tree

LIMIT = 2  # parked trees per build: a stage's next step, and a stage a COPY --from reads
Identity = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class Parked:
    """A parked tree and the paths in it its last user replaced (to restore from layers)."""

    path: Path
    restore: frozenset[str]


class _Pool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self.trees: OrderedDict[Identity, Parked] = OrderedDict()

    def park(self, tree: Path, identity: Identity, restore: frozenset[str]) -> bool:
        target = self.directory / f"tree-{uuid.uuid4().hex}"
        try:
            os.rename(tree, target)
        except OSError:
            return False  # another filesystem, or gone: the caller deletes it
        evicted = []
        with self.lock:
            old = self.trees.pop(identity, None)
            if old is not None:
                evicted.append(old.path)
            self.trees[identity] = Parked(target, restore)
            while len(self.trees) > LIMIT:
                evicted.append(self.trees.popitem(last=False)[1].path)
        for path in evicted:
            remove_tree(path, ignore_errors=True)
        return True

    def take(self, identity: Identity, into: Path) -> Parked | None:
        with self.lock:
            parked = self.trees.pop(identity, None)
        if parked is None:
            return None
        try:
            os.rename(parked.path, into)
        except OSError:
            remove_tree(parked.path, ignore_errors=True)
            return None
        return Parked(into, parked.restore)


_active: _Pool | None = None
_active_lock = threading.Lock()


@contextlib.contextmanager
def keep(directory: Path) -> Iterator[None]:
    """Park trees in ``directory`` (on the store's filesystem) until the block ends, then
    delete them. Nested or concurrent calls in one process share the first one's pool."""
    global _active
    with _active_lock:
        if _active is not None:
            owner = False
        else:
            _active, owner = _Pool(directory), True
    try:
        yield
    finally:
        if owner:
            with _active_lock:
                pool, _active = _active, None
            if pool is not None:
                with pool.lock:
                    trees = [p.path for p in pool.trees.values()]
                    pool.trees.clear()
                for path in trees:
                    remove_tree(path, ignore_errors=True)


def identity(dirs: Iterable[Path]) -> Identity | None:
    """Which layer dirs, top-most first: device, inode and mtime of each (None if one is
    gone). A renamed dir keeps all three; a layer made again elsewhere does not match."""
    out = []
    for path in dirs:
        try:
            st = os.stat(path)
        except OSError:
            return None
        out.append((st.st_dev, st.st_ino, st.st_mtime_ns))
    return tuple(out)


def park(tree: Path, stack: Identity | None, restore: frozenset[str]) -> bool:
    """Keep ``tree`` as the merged view of ``stack``; False (the caller deletes it) when
    no pool is open or it cannot be moved there."""
    pool = _active
    if pool is None or stack is None:
        return False
    return pool.park(tree, stack, restore)


def take(stack: Identity | None, into: Path) -> Parked | None:
    """The tree parked for ``stack``, moved to ``into`` (which must not exist)."""
    pool = _active
    if pool is None or stack is None:
        return None
    return pool.take(stack, into)
