"""What an unpacked layer held when it was placed: a manifest and a cheap fingerprint.

An unpacked layer (``<root>/layers/<hex>``) is an overlay lower dir that builds and
containers read as is, so an edited or added file there would flow into every image
built on it. When a layer is placed, two records go to ``<root>/layermeta``:

- ``<hex>.fp``: a fingerprint of every entry's metadata (path, mode, owner, size,
  mtime, ctime, inode, link count). Checked before each use; it reads no file content,
  and an edit cannot hide from it because no normal user can set a file's ctime.
- ``<hex>.manifest``: one JSON line per entry (path, mode, owner, size, mtime, link
  target, device, xattrs and an xxh3-128 hash of a regular file's content; sha256 in
  manifests written before). ``cache verify`` compares a layer against it in full; so
  does a use whose fingerprint differs (a copied store has new inodes and ctimes but the
  same content).

A layer a build step made gets both records from the pass that wrote its tar
(``TreeRecorder``, fed by ``cache.layers.write_layer``); one unpacked from a blob is
walked once more after extraction (``LayerMeta.record``).

Walks are iterative (no recursion), so a deep tree cannot exhaust the stack.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cache.digest import Fingerprint, Sha256
from cache.layerwalk import Xattrs, read_xattrs

_CHUNK = 1 << 20
_VERSION = "1"
_SHOWN = 5  # changed paths named in a mismatch report
_XXH3 = "xxh3:"


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


def _entries(root: Path) -> list[tuple[str, os.stat_result]]:
    """Every entry below ``root`` (``""`` is root itself) with its lstat, in path order."""
    found: list[tuple[bytes, str, os.stat_result]] = []
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
                found.append((child.encode("utf-8", "surrogateescape"), child, st))
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)
    found.sort(key=_first)
    return [("", os.lstat(root)), *((rel, st) for _, rel, st in found)]


def _first(item: tuple[bytes, str, object]) -> bytes:
    return item[0]


def _fingerprint_line(rel: str, st: os.stat_result) -> str:
    # The root's own ctime is left out: placing a layer renames its root, which sets it.
    ctime = st.st_ctime_ns if rel else 0
    return (
        f"{rel}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}\0{st.st_mtime_ns}"
        f"\0{ctime}\0{st.st_ino}\0{st.st_nlink}\n"
    )


def _fingerprint_of(lines: Iterable[str]) -> str:
    h = Sha256()
    h.update("".join(lines).encode("utf-8", "surrogateescape"))
    return f"{_VERSION}:{h.digest().hex}"


def fingerprint(root: Path) -> str:
    """The metadata fingerprint of the tree at ``root`` (no file content is read).

    Checked before every use of a layer, so it is the one walk here kept lean: each
    line starts with its path and a NUL (lower than any byte of a path), so sorting the
    encoded lines sorts them in path order, the root's first.
    """
    lines = [_fingerprint_line("", os.lstat(root)).encode("utf-8", "surrogateescape")]
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel) if rel else root)
        except PermissionError:
            continue  # as _entries
        with it:
            for entry in it:
                child = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                lines.append(
                    f"{child}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}"
                    f"\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{st.st_nlink}\n".encode(
                        "utf-8", "surrogateescape"
                    )
                )
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)
    lines.sort()
    h = Sha256()
    h.update(b"".join(lines))
    return f"{_VERSION}:{h.digest().hex}"


def manifest_row(
    rel: str, st: os.stat_result, xattrs: Xattrs, *, content: str = "", link: str = ""
) -> str:
    """One entry's manifest line; ``content``: a regular file's content hash (hex),
    ``link``: a symlink's target."""
    mode = st.st_mode
    if not xattrs and stat.S_ISREG(mode) and _plain(rel) and _plain(content):
        # Most entries: what json.dumps writes for them, without its general code.
        return (
            f'["{rel}",{mode},{st.st_uid},{st.st_gid},{st.st_size},{st.st_mtime_ns},'
            f'"{content}",{{}}]'
        )
    row: list[object] = [rel, st.st_mode, st.st_uid, st.st_gid]
    if stat.S_ISREG(st.st_mode):
        row += [st.st_size, st.st_mtime_ns, content]
    elif stat.S_ISLNK(st.st_mode):
        row += [link, st.st_mtime_ns]
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        row += [st.st_rdev, st.st_mtime_ns]
    else:
        row += [st.st_mtime_ns]  # a dir's mtime changes with its entries
    row.append({name: value.hex() for name, value in xattrs})
    return json.dumps(row, separators=(",", ":"), ensure_ascii=True)


def _plain(text: str) -> bool:
    """Whether json.dumps (ensure_ascii) writes ``text`` as it is, between quotes."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def manifest(root: Path, *, legacy: bool = False) -> list[str]:
    """One canonical JSON line per entry, in path order; content hashed once per inode.

    ``legacy``: hash contents as manifests recorded before xxh3 did (bare sha256 hex).
    """
    lines = []
    hashed: dict[tuple[int, int], str] = {}
    for rel, st in _entries(root):
        path = os.path.join(root, rel) if rel else str(root)
        content = link = ""
        if stat.S_ISREG(st.st_mode):
            inode = (st.st_dev, st.st_ino)
            if inode not in hashed:
                try:
                    hashed[inode] = _hash_file(path, legacy)
                except PermissionError:
                    hashed[inode] = "unreadable"  # rootless: owned by a subordinate id
            content = hashed[inode]
        elif stat.S_ISLNK(st.st_mode):
            link = os.readlink(path)
        lines.append(manifest_row(rel, st, read_xattrs(path), content=content, link=link))
    return lines


class ContentHash:
    """What a manifest records of a regular file's content: ``xxh3:<xxh3-128 hex>``.

    A local record, read by no other tool, so the fast hash (cache.digest); manifests
    recorded before hold the bare sha256 hex (``legacy``), and are checked with it.
    """

    def __init__(self, *, legacy: bool = False) -> None:
        self._legacy = Sha256() if legacy else None
        self._fast = Fingerprint()

    def update(self, data: bytes) -> None:
        if self._legacy is not None:
            self._legacy.update(data)
        else:
            self._fast.update(data)

    def value(self) -> str:
        if self._legacy is not None:
            return self._legacy.digest().hex
        return _XXH3 + self._fast.hexdigest()


def _hash_file(path: str, legacy: bool) -> str:
    h = ContentHash(legacy=legacy)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.value()


def _is_legacy(recorded: list[str]) -> bool:
    """Whether a recorded manifest hashed contents with sha256 (before xxh3)."""
    for line in recorded:
        row = json.loads(line)
        if stat.S_ISREG(row[1]) and row[6] != "unreadable":
            return not str(row[6]).startswith(_XXH3)
    return False  # no content hashed: either way gives the same lines


@dataclass(frozen=True)
class TreeRecord:
    """Both records of a tree, made during another pass over it (``TreeRecorder``)."""

    manifest: tuple[str, ...]
    fingerprint: str


class TreeRecorder:
    """Collects a tree's records from a walk in any order (a layer writer's own pass), so
    the tree is not read again; gives what ``manifest`` and ``fingerprint`` would. The
    caller adds the root itself as ``""`` and hashes a regular file's content with
    ``ContentHash``, once per inode."""

    def __init__(self) -> None:
        self._rows: list[tuple[bytes, str, str]] = []

    def add(
        self, rel: str, st: os.stat_result, xattrs: Xattrs, *, content: str = "", link: str = ""
    ) -> None:
        key = rel.encode("utf-8", "surrogateescape")
        row = manifest_row(rel, st, xattrs, content=content, link=link)
        self._rows.append((key, row, _fingerprint_line(rel, st)))

    def result(self) -> TreeRecord:
        rows = sorted(self._rows, key=_first)
        return TreeRecord(tuple(r[1] for r in rows), _fingerprint_of(r[2] for r in rows))


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

    def write(self, hex_name: str, record: TreeRecord) -> None:
        """Write records made during another pass over the tree (``TreeRecorder``)."""
        _write(self._tmp, self.root / f"{hex_name}.manifest", "\n".join(record.manifest) + "\n")
        _write(self._tmp, self.root / f"{hex_name}.fp", record.fingerprint + "\n")

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
            return compare(recorded, manifest(tree, legacy=_is_legacy(recorded)))
        except (ValueError, IndexError, TypeError):
            return Mismatch(("(the recorded manifest is malformed)",), (), ())

    def forget(self, hex_name: str) -> None:
        for suffix in (".fp", ".manifest"):
            (self.root / f"{hex_name}{suffix}").unlink(missing_ok=True)

    def names(self) -> set[str]:
        """The layer names that have any record."""
        return {p.name.rsplit(".", 1)[0] for p in self.root.iterdir()}


def _write(tmp_dir: Path, path: Path, text: str) -> None:
    """Write ``path`` atomically through a temp file that is flock'ed while alive, so the
    temp of a killed writer is swept by the next command (``deadtmp.clean_dead_tmp``)."""
    tmp = tmp_dir / f"meta-{uuid.uuid4().hex}"
    with open(tmp, "w", encoding="utf-8") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
