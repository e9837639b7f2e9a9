"""The entries of a diff dir (overlay upper-dir form) in the order a layer tar holds them.

Depth-first, each dir's children sorted by name, so parents come before their children
and the same dir always gives the same order. Overlay whiteouts are recognised here: a
0/0 char device ``name`` (or its xattr form, :mod:`fstree.whiteout`) is the entry
``.wh.name``; an opaque dir gets a synthetic
``dir/.wh..wh..opq`` entry, first among its children (image-spec layer.md "Whiteouts").
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from fstree import whiteout

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
# Rootless with a single-id mapping, extraction cannot chown to the tar's ids; it keeps
# them here ("uid:gid") so a file copied up into a new layer is written with them again.
OWNER_XATTR = "user.pybuild.owner"

Xattrs = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Entry:
    """One thing to write: a file in the diff dir, or a synthetic opaque marker."""

    arc: str  # archive name, relative, no trailing slash
    path: str  # file system path ("" for an opaque marker)
    st: os.stat_result | None  # None for an opaque marker
    xattrs: Xattrs = ()  # what the tar keeps (no overlay or owner xattrs)
    whiteout: bool = False  # a 0/0 char device, written as .wh.<name>
    opaque: bool = False  # a directory whose lower contents are hidden
    owner: tuple[int, int] | None = None  # from OWNER_XATTR
    rel: str = ""  # path below the diff dir as it is on disk ("" for a marker)
    all_xattrs: Xattrs = ()  # every xattr, as on disk (what layermeta records)


def walk(root: str) -> Iterator[Entry]:
    """Entries depth-first in sorted order, so parents come before their children."""
    stack = [iter(_children(root, "", "", opaque=False))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        yield entry
        if entry.st is not None and stat.S_ISDIR(entry.st.st_mode):
            prefix = entry.arc + "/"
            stack.append(iter(_children(entry.path, prefix, entry.rel + "/", entry.opaque)))


def _children(path: str, prefix: str, rel: str, opaque: bool) -> list[Entry]:
    entries = [_entry(os.path.join(path, name), prefix, rel, name) for name in os.listdir(path)]
    if opaque:
        entries.append(Entry(prefix + OPAQUE_MARKER, "", None))
    return sorted(entries, key=_sort_key)


def _sort_key(entry: Entry) -> tuple[int, bytes]:
    # Opaque marker first: a reader applying the layer then empties the dir before it
    # writes this layer's own children into it (moby/moby#17819).
    base = entry.arc.rpartition("/")[2]
    return (0 if entry.st is None else 1, os.fsencode(base))


def _entry(path: str, prefix: str, rel: str, name: str) -> Entry:
    st = os.lstat(path)
    xattrs = read_xattrs(path)
    if not xattrs and not stat.S_ISCHR(st.st_mode):
        return Entry(prefix + name, path, st, rel=rel + name)  # most entries: nothing to read
    if _is_whiteout(st, xattrs):
        arc = prefix + WHITEOUT_PREFIX + name
        return Entry(arc, path, st, whiteout=True, rel=rel + name, all_xattrs=xattrs)
    opaque = stat.S_ISDIR(st.st_mode) and any(n in OPAQUE_XATTRS and v == b"y" for n, v in xattrs)
    kept = tuple(
        x for x in xattrs if not x[0].startswith(OVERLAY_XATTR_PREFIXES) and x[0] != OWNER_XATTR
    )
    owner = _recorded_owner(dict(xattrs).get(OWNER_XATTR))
    return Entry(prefix + name, path, st, kept, False, opaque, owner, rel + name, xattrs)


def _is_whiteout(st: os.stat_result, xattrs: Xattrs) -> bool:
    """Either form of :mod:`fstree.whiteout`, from what was read already."""
    if stat.S_ISCHR(st.st_mode):
        return st.st_rdev == 0
    return whiteout.could_be_xattr_form(st) and (whiteout.XATTR, b"y") in xattrs


def _recorded_owner(value: bytes | None) -> tuple[int, int] | None:
    try:
        uid, gid = (int(n) for n in (value or b"").split(b":"))
    except ValueError:
        return None
    return (uid, gid) if uid >= 0 and gid >= 0 else None


def read_xattrs(path: str) -> Xattrs:
    """Every xattr of ``path`` (not followed), sorted by name; () where there are none."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()  # the file system has no xattrs
    out = []
    for name in sorted(names):
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue  # removed meanwhile, or not readable by us
    return tuple(out)
