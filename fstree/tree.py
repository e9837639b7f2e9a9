"""Iterative, fd-relative walking and removal of directory trees.

A tree may be deeper than the interpreter's recursion limit and its paths longer than
PATH_MAX (4096 bytes): one RUN can make either (``mkdir d && cd d`` in a loop). So nothing
here recurses, and nothing opens a path longer than one name: every call is relative to
an open directory fd (``openat``, ``fstatat``, ``unlinkat``).

Only one directory fd is held at a time, whatever the depth (a fd per level would hit
RLIMIT_NOFILE long before the kernel's depth limit): going back up opens ``..`` and checks
that it is the directory we came down from (device and inode), so a tree moved while we
work raises OSError(ESTALE) instead of walking or deleting somewhere else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

StrPath = str | os.PathLike[str]


@dataclass
class _Frame:
    """One directory on the way down: how to get back to it and what is left to do."""

    name: str  # its name in its parent
    ident: tuple[int, int]  # (st_dev, st_ino)
    prefix: str = ""  # its path relative to the walk's root, with a trailing "/"
    pending: list[tuple[str, os.stat_result]] = field(default_factory=list)  # reversed


def walk(root: StrPath, *, skip_unreadable: bool = False) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``root`` as (relative path, lstat), depth-first, parents before
    children, siblings sorted by name; symlinks are reported, never followed.

    A dir that vanishes while we walk is skipped. ``skip_unreadable`` also skips dirs we
    may not read (otherwise PermissionError). The relative paths may exceed PATH_MAX.
    """
    fd = os.open(root, _DIR_FLAGS)
    try:
        top = os.fstat(fd)
        frames = [_Frame("", _ident(top), "", _sorted_children(fd))]
        while frames:
            frame = frames[-1]
            if not frame.pending:
                frames.pop()
                if frames:
                    fd = _up(fd, frames[-1].ident)
                continue
            name, st = frame.pending.pop()
            rel = frame.prefix + name
            yield rel, st
            if not stat.S_ISDIR(st.st_mode):
                continue
            child = _open_child(fd, name, st, skip_unreadable=skip_unreadable)
            if child is None:
                continue
            os.close(fd)
            fd = child
            frames.append(_Frame(name, _ident(st), rel + "/", _sorted_children(fd)))
    finally:
        os.close(fd)


def _sorted_children(fd: int) -> list[tuple[str, os.stat_result]]:
    with os.scandir(fd) as it:
        entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
    entries.sort(key=lambda e: e[0], reverse=True)  # popped from the end: A first
    return entries


def _open_child(fd: int, name: str, st: os.stat_result, *, skip_unreadable: bool) -> int | None:
    try:
        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        return None  # removed or replaced since it was listed
    except PermissionError:
        if skip_unreadable:
            return None
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # replaced by a symlink since it was listed
        raise
    if _ident(os.fstat(child)) != _ident(st):
        os.close(child)
        return None  # replaced since it was listed: not the dir we reported
    return child


def _up(fd: int, expected: tuple[int, int]) -> int:
    """Close ``fd`` and return a fd of its parent, which must be ``expected``."""
    try:
        parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)
    if _ident(os.fstat(parent)) != expected:
        os.close(parent)
        raise OSError(errno.ESTALE, "the tree was moved while it was walked")
    return parent


def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def remove_tree(path: StrPath, *, ignore_errors: bool = False) -> None:
    """Remove ``path`` and everything below it; a no-op when it does not exist.

    A symlink or file is unlinked (a symlink is never followed). Dirs whose mode forbids
    removing their entries (e.g. 0555 from a layer) are made writable first when we own
    them. Raises OSError unless ``ignore_errors``, leaving what it could not remove.
    """
    try:
        _remove_tree(os.fspath(path))
    except OSError:
        if not ignore_errors:
            raise


def _remove_tree(path: str) -> None:
    parent_path, name = os.path.split(os.path.normpath(path))
    if name in ("", ".", ".."):
        raise OSError(errno.EINVAL, "refusing to remove this path", path)
    parent = os.open(parent_path or ".", _DIR_FLAGS)
    try:
        remove_entry(parent, name)
    finally:
        os.close(parent)


def remove_entry(dir_fd: int, name: str) -> None:
    """Remove the entry ``name`` of the open dir ``dir_fd`` and, for a dir, everything
    below it; a no-op when it does not exist. Raises OSError when it cannot."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        _remove_below(dir_fd, name, st)
        _in_writable_dir(dir_fd, os.rmdir, name)
    else:
        _in_writable_dir(dir_fd, os.unlink, name)


def _remove_below(parent: int, name: str, st: os.stat_result) -> None:
    """Empty the dir ``name`` of ``parent``, depth-first, holding one dir fd at a time."""
    fd = _open_for_removal(parent, name)
    if fd is None:
        return
    frames = [_Frame(name, _ident(st))]
    try:
        frames[0].pending = _unlink_files(fd)
        while frames:
            frame = frames[-1]
            if frame.pending:
                child_name, child_st = frame.pending.pop()
                child = _open_for_removal(fd, child_name)
                if child is None:
                    continue
                os.close(fd)
                fd = child
                frames.append(_Frame(child_name, _ident(child_st)))
                frames[-1].pending = _unlink_files(fd)
                continue
            frames.pop()
            if frames:
                fd = _up(fd, frames[-1].ident)
                _in_writable_dir(fd, os.rmdir, frame.name)
    finally:
        os.close(fd)


def _open_for_removal(parent: int, name: str) -> int | None:
    """A fd of the dir ``name``, made readable first if need be; None if it is gone."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return None
    except PermissionError:
        pass
    # Follows symlinks (fchmodat cannot refuse them on Linux), but ``name`` was a dir
    # when listed, and the O_NOFOLLOW open below refuses one that a symlink replaced.
    os.chmod(name, 0o700, dir_fd=parent)
    return os.open(name, _DIR_FLAGS, dir_fd=parent)


def _unlink_files(fd: int) -> list[tuple[str, os.stat_result]]:
    """Unlink every non-dir entry of ``fd``; return its subdirs as (name, lstat)."""
    with os.scandir(fd) as it:
        entries = list(it)
    dirs = []
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            dirs.append((entry.name, st))
            continue
        with contextlib.suppress(FileNotFoundError):
            _in_writable_dir(fd, os.unlink, entry.name)
    return dirs


def _in_writable_dir(fd: int, action: Callable[..., None], name: str) -> None:
    """``action(name, dir_fd=fd)`` (an unlink or rmdir); on EACCES/EPERM make the dir
    ``fd`` writable (as its owner may) and retry once."""
    try:
        action(name, dir_fd=fd)
        return
    except PermissionError:
        try:
            os.chmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o700)
        except OSError:
            pass
        else:
            action(name, dir_fd=fd)
            return
        raise


def short_path(path: object, limit: int = 160) -> str:
    """``path`` for a message: one too long to show whole keeps its start and end."""
    text = str(path)
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}…{text[-keep:]} ({len(text)} bytes, {text.count('/')} levels)"


def copy_tree(src: StrPath, dst: StrPath) -> None:
    """Copy the dir ``src`` to the new dir ``dst`` as ``shutil.copytree(symlinks=True)``
    does (files with their metadata, symlinks as links, dir modes and times), but for any
    depth; a path longer than PATH_MAX raises OSError(ENAMETOOLONG). Sockets, fifos and
    devices are skipped."""
    import shutil  # only copies need it, not every remover of a tree

    src, dst = os.fspath(src), os.fspath(dst)
    os.mkdir(dst)
    dirs = [""]
    for rel, st in walk(src):
        source, target = os.path.join(src, rel), os.path.join(dst, rel)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(target)
            dirs.append(rel)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISREG(st.st_mode):
            shutil.copy2(source, target, follow_symlinks=False)
    for rel in reversed(dirs):  # children changed their dir's mtime: deepest first
        shutil.copystat(os.path.join(src, rel), os.path.join(dst, rel), follow_symlinks=False)
