"""Asking the filesystem to spread a directory's children over the disk.

ext4 puts a new directory in or near its parent's block group, unless the parent
carries the "top of directory hierarchies" flag (``FS_TOPDIR_FL``, ``chattr +T``): then
its Orlov allocator places each child, as it does the children of ``/``, in a group
with free room and few directories, and the child's files follow it there.

The store marks ``<root>/tmp``, where every step's upper dir and every unpacked layer is
made, because crowding them costs a lot on ext4 without a journal (this kind of VM's
root). There, a new inode skips every inode of its group that was freed in the last
30 s (330 s while the inode table is not yet written back: ext4's
``recently_deleted``), one buffer lookup each. After a store or a big layer was
removed, a step's file creates in the same groups cost 500-800 µs instead of 15 µs,
and a RUN that writes 20,000 files took 17-19 s instead of 5 s
(``benchmarks/bench_spread.py``).

The flag is a placement hint and nothing else. Filesystems without it (tmpfs,
overlayfs, xfs, btrfs) refuse the ioctl, and then nothing changes.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

# <linux/fs.h>: _IOR('f', 1, long) and _IOW('f', 2, long); the kernel moves an int.
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000
_INT = 4


def dir_flags(path: Path) -> int | None:
    """The inode flags of directory ``path`` (``lsattr``), or None where it has none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _get(fd)
    finally:
        os.close(fd)


def spread_children(path: Path) -> bool:
    """Mark directory ``path`` as a top of directory hierarchies (``chattr +T``).

    True when it carries the flag afterwards; False, changing nothing, where the
    filesystem has no such flag or the caller may not set it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = _get(fd)
        if flags is None:
            return False
        if flags & FS_TOPDIR_FL:
            return True
        try:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, (flags | FS_TOPDIR_FL).to_bytes(_INT, sys.byteorder))
        except OSError:
            return False
        return True
    finally:
        os.close(fd)


def _get(fd: int) -> int | None:
    buf = bytearray(_INT)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    except OSError:
        return None
    return int.from_bytes(buf, sys.byteorder)
