"""A finished stage's root filesystem read straight from its layer dirs, without mounting.

Keys of ``COPY --from`` and ``RUN --mount=from=`` hash the content of the paths they use
(``builder.ops.stagekeys``); reading the unpacked layer dirs (overlay lower-dir form: 0/0
char-device whiteouts, opaque-dir xattrs) gives that content at stable host paths, so
the store's stat cache spares re-reading files a previous build hashed. The merge is
overlayfs's: the top-most entry of a name wins; a directory merges the same directory
of the layers below it until one is opaque, or holds a whiteout or a non-directory there.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from cache.layers import OWNER_XATTR
from runtime.snapshotter import is_opaque, is_whiteout, visible_lowers

_MAX_LINKS = 40


@dataclass(frozen=True)
class StageNode:
    """One merged entry: ``rel`` has no leading ``/`` ("" is the root); ``path`` and
    ``st`` come from the top-most layer that has it; ``layers`` are the layer dirs a
    directory merges (top-most first), empty for a non-directory."""

    rel: str
    path: Path
    st: os.stat_result
    layers: tuple[Path, ...] = ()

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    def owner(self) -> tuple[int, int]:
        """uid and gid, from the rootless owner xattr when the extractor left one."""
        if not stat.S_ISLNK(self.st.st_mode):
            try:
                uid, gid = os.getxattr(self.path, OWNER_XATTR).split(b":")
                return int(uid), int(gid)
            except (OSError, ValueError):
                pass
        return self.st.st_uid, self.st.st_gid


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class StageTree:
    """The merged view of ``lowers`` (top-most first), as a stage's RUN would see it."""

    def __init__(self, lowers: Sequence[Path]) -> None:
        self._lowers = visible_lowers(lowers)

    def root(self) -> StageNode | None:
        """The root directory; None for a stage without layers (scratch)."""
        if not self._lowers:
            return None
        top = self._lowers[0]
        return StageNode("", top, os.lstat(top), self._lowers)

    def child(self, parent: StageNode, name: str) -> StageNode | None:
        """``name`` in directory ``parent``; None when no layer shows it."""
        rel = _join(parent.rel, name)
        found: StageNode | None = None
        dirs: list[Path] = []
        for layer in parent.layers:
            path = layer / rel
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if is_whiteout(path, st) or (dirs and not stat.S_ISDIR(st.st_mode)):
                break  # hides this name in every layer below
            if found is None:
                found = StageNode(rel, path, st)
            if not stat.S_ISDIR(st.st_mode):
                break
            dirs.append(layer)
            if is_opaque(path):
                break
        if found is not None and dirs:
            found = StageNode(found.rel, found.path, found.st, tuple(dirs))
        return found

    def children(self, node: StageNode) -> list[StageNode]:
        """The merged entries of directory ``node``, in byte order of their names."""
        names: set[str] = set()
        for layer in node.layers:
            try:
                names.update(os.listdir(layer / node.rel))
            except (FileNotFoundError, NotADirectoryError):
                continue
        out = []
        for name in sorted(names, key=os.fsencode):
            found = self.child(node, name)
            if found is not None:
                out.append(found)
        return out

    def lookup(self, path: str, *, follow_last: bool = True) -> StageNode | None:
        """The entry at container ``path`` with its symlinks resolved inside the stage
        (``..`` stops at the root, absolute targets start from it), or None when it does
        not exist. Raises BuildError on a link loop."""
        todo = [p for p in path.split("/") if p and p != "."]
        todo.reverse()
        done: list[StageNode] = []
        current = self.root()
        links = 0
        while todo and current is not None:
            part = todo.pop()
            if part == "..":
                current = done.pop() if done else current
                continue
            if not current.is_dir:
                return None
            found = self.child(current, part)
            if found is None:
                return None
            if stat.S_ISLNK(found.st.st_mode) and (follow_last or todo):
                links += 1
                if links > _MAX_LINKS:
                    raise BuildError(f"{path}: too many levels of symbolic links")
                target = os.readlink(found.path)
                if target.startswith("/"):
                    current, done = self.root(), []
                todo.extend(reversed([p for p in target.split("/") if p and p != "."]))
                continue
            done.append(current)
            current = found
        return current

    def walk(self, node: StageNode) -> Iterator[StageNode]:
        """``node`` and everything below it, parents first, names in byte order."""
        stack = [node]
        while stack:
            entry = stack.pop()
            yield entry
            if entry.is_dir:
                stack.extend(reversed(self.children(entry)))
