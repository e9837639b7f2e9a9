"""Tar members checked before anything is made of them, by every extraction path.

A tar header can say things no file system call accepts: a NUL byte inside a PAX
``path`` or ``linkpath`` (the C string would end there), a name component longer than
NAME_MAX or a path longer than PATH_MAX, owner ids and modes beyond what the kernel
takes, device numbers ``makedev`` cannot encode, an mtime that is not a number or not
a 64-bit nanosecond count. Python reports those as ValueError or OverflowError from
deep inside an extraction; here they become one :class:`UnsafeTarEntry` naming the
member. Sparse entries are refused too: their holes would be written out as zeros, so a
tar of a few hundred bytes could fill the disk. Path safety (``..``, absolute names,
links out of the tree) stays with each extractor, which knows its root.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from cache.errors import LayerError

if TYPE_CHECKING:
    import tarfile

NAME_MAX = 255  # bytes in one path component (Linux)
PATH_MAX = 4095  # bytes in a path or a symlink target, without the final NUL
MAX_ID = 2**32 - 2  # uid/gid: 32 bits, and -1 (2**32 - 1) means "leave unchanged"
MAX_MODE = 2**32 - 1  # mode_t; file type bits some writers add are ignored by chmod
MAX_DEVICE = 2**32 - 1  # major and minor for makedev
_MAX_SECONDS = (2**63 - 1) // 1_000_000_000  # mtimes become int64 nanoseconds


class UnsafeTarEntry(LayerError):
    """A tar member whose name, link, owner, mode, device or time cannot be extracted."""


def check_member(member: tarfile.TarInfo, where: str) -> None:
    """Raise UnsafeTarEntry when ``member`` (from ``where``, e.g. an archive name)
    holds something no extraction can make; return quietly otherwise."""
    problem = member_problem(member)
    if problem is not None:
        raise UnsafeTarEntry(
            f"{where}: tar entry {_shown(member.name)}: {problem}",
            hint="the archive is malformed or hostile; nothing was extracted from this entry",
        )


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` cannot be extracted, or None."""
    return (
        _path_problem("name", member.name)
        or (_path_problem("link name", member.linkname) if member.linkname else None)
        or _sparse_problem(member)
        or _number_problems(member)
        or _xattr_problem(member)
    )


def _path_problem(what: str, path: str) -> str | None:
    if "\0" in path:
        return f"its {what} holds a NUL byte"
    data = os.fsencode(path)
    if len(data) > PATH_MAX:
        return f"its {what} is {len(data)} bytes long (the limit is {PATH_MAX})"
    longest = max((len(part) for part in data.split(b"/")), default=0)
    if longest > NAME_MAX:
        return f"its {what} has a component of {longest} bytes (the limit is {NAME_MAX})"
    return None


def _sparse_problem(member: tarfile.TarInfo) -> str | None:
    # A sparse entry's holes read as zeros: a few hundred bytes of tar can claim an
    # exabyte, which an extractor writing every byte would put on the disk. Image layers
    # never hold one (Go's tar writer, so docker and BuildKit, cannot make them).
    if member.issparse() or any(k.startswith("GNU.sparse.") for k in member.pax_headers):
        return "it is a sparse file, which pybuild does not extract"
    return None


def _number_problems(member: tarfile.TarInfo) -> str | None:
    if not 0 <= member.uid <= MAX_ID or not 0 <= member.gid <= MAX_ID:
        return f"owner {member.uid}:{member.gid} is out of range (0-{MAX_ID})"
    if not 0 <= member.mode <= MAX_MODE:
        return f"mode {member.mode:o} is out of range"
    if member.size < 0:
        return f"size {member.size} is negative"
    if (member.ischr() or member.isblk()) and not (
        0 <= member.devmajor <= MAX_DEVICE and 0 <= member.devminor <= MAX_DEVICE
    ):
        return f"device {member.devmajor}:{member.devminor} is out of range"
    mtime = float(member.mtime)
    if not math.isfinite(mtime) or abs(mtime) > _MAX_SECONDS:
        return f"modification time {member.mtime} is out of range"
    return None


def _xattr_problem(member: tarfile.TarInfo) -> str | None:
    for key in member.pax_headers:
        if "\0" in key:  # xattr names become C strings as well
            return f"PAX header {_shown(key)} holds a NUL byte in its name"
    return None


def _shown(name: str) -> str:
    """A name fit for one line of an error message (escaped, at most ~100 characters)."""
    text = repr(name)
    return text if len(text) <= 100 else text[:97] + "..."
