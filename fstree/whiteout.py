"""How an unpacked layer dir records a deleted path (a whiteout), on any filesystem.

overlayfs's own form is a 0/0 character device. overlayfs refuses to create one itself
(EPERM), so a store on a container's own root (docker's overlay2) cannot hold it, nor
can a filesystem where mknod is not permitted. There the deletion is recorded in
overlayfs's *xattr whiteout* form (Linux 6.7, read from lowers mounted with
``userxattr``): an empty regular file, mode 0, with ``user.overlay.whiteout``, its
parent dir marked ``user.overlay.whiteouts``. Both forms mean the same to every reader
here (layer tars, the copy snapshotter, ``COPY --from``); a layer dir that holds the
xattr form gets :data:`MARK` on its root dir, so that whoever mounts it as an overlay
lower (where a rootful mount reads only ``trusted.*`` xattrs) knows to copy instead.

A layer never forges either: ``*.overlay.*`` xattrs are dropped from tars and from what a
RUN step writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

XATTR = "user.overlay.whiteout"
PARENT_XATTR = "user.overlay.whiteouts"
# On a layer dir's root: some deletion below is in the xattr form.
MARK = "user.overlay.pybuild-xwhiteouts"
# What makes mknod(0/0) fail where the xattr form still works: overlayfs (EPERM), no
# CAP_MKNOD (EPERM), a filesystem without device nodes (EOPNOTSUPP).
_REFUSED = (errno.EPERM, errno.EACCES, errno.EOPNOTSUPP)


def make(name: str, dir_fd: int) -> bool:
    """Record that ``name`` in the dir ``dir_fd`` was deleted (nothing may be there).

    A 0/0 char device where the filesystem allows it, else the xattr form; returns True
    when the xattr form was written (the caller marks the layer root with :func:`mark`).
    Raises OSError when neither can be made.
    """
    try:
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=dir_fd)
        return False
    except OSError as exc:
        if exc.errno not in _REFUSED:
            raise
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0, dir_fd=dir_fd)
    try:
        os.fchmod(fd, 0)
        os.setxattr(fd, XATTR, b"y")
    finally:
        os.close(fd)
    os.setxattr(dir_fd, PARENT_XATTR, b"y")
    return True


def mark(layer_root: str | os.PathLike[str] | int) -> None:
    """Say on a layer dir's root that some whiteout below it is in the xattr form."""
    os.setxattr(layer_root, MARK, b"y")


def marked(layer_root: str | os.PathLike[str]) -> bool:
    """Whether the layer dir ``layer_root`` holds whiteouts in the xattr form."""
    try:
        return os.getxattr(layer_root, MARK) == b"y"
    except OSError:
        return False


def is_whiteout(path: str | os.PathLike[str], st: os.stat_result) -> bool:
    """Whether ``path`` (lstat ``st``) records a deletion, in either form."""
    if stat.S_ISCHR(st.st_mode):
        return st.st_rdev == 0
    return could_be_xattr_form(st) and has_xattr(path)


def could_be_xattr_form(st: os.stat_result) -> bool:
    """An empty regular file with mode 0: only those need their xattrs read."""
    return stat.S_ISREG(st.st_mode) and st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0


def has_xattr(path: str | os.PathLike[str]) -> bool:
    with contextlib.suppress(OSError):
        return os.getxattr(path, XATTR, follow_symlinks=False) == b"y"
    return False
