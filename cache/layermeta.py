"""What an unpacked layer held when it was placed: a manifest and a cheap fingerprint.

An unpacked layer (``<root>/layers/<hex>``) is an overlay lower dir that builds and
containers read as is, so an edited or added file there would flow into every image
built on it. When a layer is placed, two records go to ``<root>/layermeta``:

- ``<hex>.fp``: a fingerprint of every entry's metadata (path, mode, owner, size,
  mtime, ctime, inode, link count). Checked before each use; it reads no file content,
  and an edit cannot hide from it because no normal user can set a file's ctime.
- ``<hex>.manifest``: one JSON line per entry (path, mode, owner, size, mtime, link
  target, device, xattrs and the sha256 of a regular file's content). ``cache verify``
  compares a layer against it in full; so does a use whose fingerprint differs (a copied
  store has new inodes and ctimes but the same content).

Walks are iterative (no recursion), so a deep tree cannot exhaust the stack.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cache.digest import Sha256

_CHUNK = 1 << 20
_VERSION = "1"
_SHOWN = 5  # changed paths named in a mismatch report


@dataclass(frozen=True)
class Mismatch:
    """How a layer dir differs from its manifest (paths relative to the layer)."""

    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def describe(self) -> str:
        parts = []
        for label, paths in (("changed", self.changed), ("added", self.added)):
            if paths:
                parts.append(f"{label}: {_some(paths)}")
        if self.removed:
            parts.append(f"removed: {_some(self.removed)}")
        return "; ".join(parts) or "no difference"


def _some(paths: tuple[str, ...]) -> str:
    more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
    return ", ".join(paths[:_SHOWN]) + more


def _entries(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``root`` (``""`` is root itself) with its lstat, in path order."""
    yield "", os.lstat(root)
    found: list[tuple[str, os.stat_result]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel) if rel else root)
        except PermissionError:
            continue  # rootless: a dir owned by a subordinate id; its own entry still counts
        with it:
            for entry in it:
                child = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                found.append((child, st))
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)
    found.sort(key=lambda item: item[0].encode("utf-8", "surrogateescape"))
    yield from found


def fingerprint(root: Path) -> str:
    """The metadata fingerprint of the tree at ``root`` (no file content is read).

    The root's own ctime is left out: placing a layer renames its root, which sets it.
    """
    h = Sha256()
    for rel, st in _entries(root):
        ctime = 0 if rel == "" else st.st_ctime_ns
        h.update(
            f"{rel}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}\0{st.st_mtime_ns}"
            f"\0{ctime}\0{st.st_ino}\0{st.st_nlink}\n".encode("utf-8", "surrogateescape")
        )
    return f"{_VERSION}:{h.digest().hex}"


def manifest(root: Path) -> list[str]:
    """One canonical JSON line per entry, in path order; content hashed once per inode."""
    lines = []
    hashed: dict[tuple[int, int], str] = {}
    for rel, st in _entries(root):
        path = os.path.join(root, rel) if rel else str(root)
        row: list[object] = [rel, st.st_mode, st.st_uid, st.st_gid]
        if stat.S_ISREG(st.st_mode):
            inode = (st.st_dev, st.st_ino)
            if inode not in hashed:
                try:
                    hashed[inode] = _hash_file(path)
                except PermissionError:
                    hashed[inode] = "unreadable"  # rootless: owned by a subordinate id
            row += [st.st_size, st.st_mtime_ns, hashed[inode]]
        elif stat.S_ISLNK(st.st_mode):
            row += [os.readlink(path), st.st_mtime_ns]
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            row += [st.st_rdev, st.st_mtime_ns]
        else:
            row += [st.st_mtime_ns]  # a dir's mtime changes with its entries
        row.append(_xattrs(path))
        lines.append(json.dumps(row, separators=(",", ":"), ensure_ascii=True))
    return lines


def _hash_file(path: str) -> str:
    h = Sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest().hex


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    values = {}
    for name in sorted(names):
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError:
            continue
    return values


def compare(recorded: list[str], actual: list[str]) -> Mismatch:
    """Which paths differ between two manifests."""
    old = {_path_of(line): line for line in recorded}
    new = {_path_of(line): line for line in actual}
    changed = tuple(p or "/" for p in sorted(old.keys() & new.keys()) if old[p] != new[p])
    return Mismatch(
        changed=changed,
        added=tuple(sorted(new.keys() - old.keys())),
        removed=tuple(sorted(old.keys() - new.keys())),
    )


def _path_of(line: str) -> str:
    return str(json.loads(line)[0])


class LayerMeta:
    """The records of every unpacked layer of one store, at ``<root>/layermeta``."""

    def __init__(self, store_root: Path, tmp_dir: Path) -> None:
        self.root = store_root / "layermeta"
        self.root.mkdir(exist_ok=True)
        self._tmp = tmp_dir

    def record(self, hex_name: str, tree: Path) -> None:
        """Write both records of ``tree`` (before it is placed as layer ``hex_name``)."""
        _write(self._tmp, self.root / f"{hex_name}.manifest", "\n".join(manifest(tree)) + "\n")
        self.refresh(hex_name, tree)

    def refresh(self, hex_name: str, tree: Path) -> None:
        """Re-record the fingerprint only (after a full check found the content intact)."""
        _write(self._tmp, self.root / f"{hex_name}.fp", fingerprint(tree) + "\n")

    def fingerprint_matches(self, hex_name: str, tree: Path) -> bool:
        try:
            recorded = (self.root / f"{hex_name}.fp").read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return False
        return recorded == fingerprint(tree)

    def recorded(self, hex_name: str) -> list[str] | None:
        """The recorded manifest, or None when there is none (or it is unreadable)."""
        try:
            text = (self.root / f"{hex_name}.manifest").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return [line for line in text.split("\n") if line]

    def check(self, hex_name: str, tree: Path) -> Mismatch | None:
        """Compare ``tree`` in full with its manifest; None when it has no manifest."""
        recorded = self.recorded(hex_name)
        if recorded is None:
            return None
        try:
            return compare(recorded, manifest(tree))
        except (ValueError, IndexError, TypeError):
            return Mismatch(("(the recorded manifest is malformed)",), (), ())

    def forget(self, hex_name: str) -> None:
        for suffix in (".fp", ".manifest"):
            (self.root / f"{hex_name}{suffix}").unlink(missing_ok=True)

    def names(self) -> set[str]:
        """The layer names that have any record."""
        return {p.name.rsplit(".", 1)[0] for p in self.root.iterdir()}


def _write(tmp_dir: Path, path: Path, text: str) -> None:
    tmp = tmp_dir / f"meta-{uuid.uuid4().hex}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
