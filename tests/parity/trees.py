"""Read a docker-archive into a comparable view: the merged root filesystem and the config.

Both sides of a parity case (pybuild and BuildKit) go through this same code: each is
saved as a docker-archive, its layers are applied in order with OCI whiteouts
(``.wh.<name>`` deletes a path, ``.wh..wh..opq`` empties a directory of what lower
layers had), and the result becomes plain data that ``==`` can compare.

Normalisations (each is a difference that is legitimate, not a bug):

- mtimes, uname/gname and ``created`` times are dropped: parity is about what is in the
  image, and times differ by construction (build time, SOURCE_DATE_EPOCH handling).
- Go's ``omitempty``: BuildKit drops empty slices/maps/strings from the config JSON,
  so a missing key, ``null``, ``[]``, ``{}`` and ``""`` are the same value here.
- Hard links: a tar names one path as the file and the others as links to it, and which
  path comes first is the writer's choice. Each path gets the file's content and mode,
  and the link groups are compared as sets of paths.
- Mount-point stubs: runc creates ``/proc`` and ``/sys`` in the rootfs when the base
  lacks them (our busybox base does), and dockerd 20.10's BuildKit keeps them in the
  first RUN layer; pybuild's sandbox mounts them without leaving them behind. Empty
  top-level ``proc``/``sys`` directories are dropped from both sides.
- HEALTHCHECK history: Debian's dockerd 20.10 predates ``StartInterval`` (docker 25), so
  its history text has four durations where the current BuildKit (and pybuild) writes
  five; the missing ``"0s"`` is inserted on the older side.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
)

_TYPES = {
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}
_OLD_HEALTH = re.compile(r'^(HEALTHCHECK &\{\[.*\] "[^"]*" "[^"]*" "[^"]*")( \'.*\'\})$')


@dataclass
class Tree:
    """A merged root filesystem: path -> entry fields, and hard-link inode ids."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    inode: dict[str, int] = field(default_factory=dict)
    next_inode: int = 0

    def delete(self, path: str, children_only: bool = False) -> None:
        prefix = path + "/" if path else ""
        for name in [p for p in self.entries if p.startswith(prefix) and p != path]:
            self.entries.pop(name)
            self.inode.pop(name, None)
        if not children_only:
            self.entries.pop(path, None)
            self.inode.pop(path, None)

    def link_groups(self) -> list[list[str]]:
        groups: dict[int, list[str]] = {}
        for path, ino in self.inode.items():
            groups.setdefault(ino, []).append(path)
        return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _content(data: bytes) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and len(data) <= 256:
        return text
    return "sha256:" + hashlib.sha256(data).hexdigest()


def apply_layer(tree: Tree, tar: tarfile.TarFile) -> None:
    """Apply one layer tar on ``tree``: whiteouts first (they act on lower layers)."""
    members = tar.getmembers()
    for m in members:
        path = _clean(m.name)
        base = posixpath.basename(path)
        if base == ".wh..wh..opq":
            tree.delete(posixpath.dirname(path), children_only=True)
        elif base.startswith(".wh."):
            tree.delete(posixpath.join(posixpath.dirname(path), base[4:]))
    for m in members:
        path = _clean(m.name)
        if posixpath.basename(path).startswith(".wh.") or not path:
            continue
        _add(tree, path, m, tar)


def _add(tree: Tree, path: str, m: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
    replaces_dir_contents = not m.isdir() or tree.entries.get(path, {}).get("type") != "dir"
    if replaces_dir_contents:  # a dir over a dir merges; anything else replaces the path
        tree.delete(path)
    if m.islnk():
        target = _clean(m.linkname)
        tree.entries[path] = dict(tree.entries[target])
        tree.inode[path] = tree.inode[target]
        return
    entry: dict[str, Any] = {
        "type": _TYPES.get(m.type, "file"),
        "mode": oct(m.mode & 0o7777),
        "uid": m.uid,
        "gid": m.gid,
    }
    if m.issym():
        entry["link"] = m.linkname
    elif m.ischr() or m.isblk():
        entry["dev"] = (m.devmajor, m.devminor)
    elif m.isfile():
        handle = tar.extractfile(m)
        entry["content"] = _content(handle.read() if handle else b"")
        tree.inode[path] = tree.next_inode
        tree.next_inode += 1
    tree.entries[path] = entry


_SETS = ("ExposedPorts", "Volumes")


def _drop_empty(value: Any) -> Any:
    """Go omitempty: an empty slice, map or string is the same as no value."""
    if isinstance(value, dict):
        # ExposedPorts and Volumes are Go sets (each value {}): compared as sorted keys,
        # or dropping the empty values would drop the whole set.
        out = {k: sorted(v) if k in _SETS and v else _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, [], {}, "")}
    return value


def _history(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for h in entries:
        created_by = h.get("created_by", "")
        old = _OLD_HEALTH.match(created_by)
        if old:
            created_by = old.group(1) + ' "0s"' + old.group(2)
        item = {"created_by": created_by, "empty_layer": bool(h.get("empty_layer", False))}
        if h.get("comment"):
            item["comment"] = h["comment"]
        out.append(item)
    return out


def read_archive(path: Path) -> dict[str, Any]:
    """The comparable view of the one image in a docker-archive at ``path``."""
    with tarfile.open(path, "r:*") as outer:
        manifest = json.load(_member(outer, "manifest.json"))[0]
        config = json.load(_member(outer, manifest["Config"]))
        tree = Tree()
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=_member(outer, layer), mode="r:*") as inner:
                apply_layer(tree, inner)
    for stub in ("proc", "sys"):
        if tree.entries.get(stub, {}).get("type") == "dir" and not any(
            p.startswith(stub + "/") for p in tree.entries
        ):
            tree.delete(stub)
    cfg = config.get("config") or {}
    return {
        "config": _drop_empty({k: cfg.get(k) for k in CONFIG_FIELDS}),
        "author": config.get("author", ""),
        "platform": f"{config.get('os')}/{config.get('architecture')}",
        "history": _history(config.get("history") or []),
        "layers": len(manifest["Layers"]),
        "tree": tree.entries,
        "hardlinks": tree.link_groups(),
    }


def _member(tar: tarfile.TarFile, name: str) -> Any:
    handle = tar.extractfile(name)
    if handle is None:
        raise AssertionError(f"{name} is not a file in the archive")
    return handle
