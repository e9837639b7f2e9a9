"""COPY/ADD into a mounted rootfs, with docker's directory and trailing-slash rules.

The rules (Dockerfile reference, COPY): a directory source copies its *contents*; a file
source lands at ``dest`` unless ``dest`` ends in ``/`` or is an existing directory, in
which case it lands inside it; several sources need a ``dest`` ending in ``/``. New files
are owned by 0:0 unless ``--chown``; modes and mtimes come from the source; missing
parents of ``dest`` are created 0755 (owned by the ``--chown`` owner), and so is ``dest``
itself for a directory source; an existing destination directory keeps its mode and owner.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.modes import Chmod
from builder.rootpath import clean, resolve_in_root
from fstree.tree import remove_tree


@dataclass(frozen=True)
class CopyOptions:
    owner: tuple[int, int] = (0, 0)
    chmod: Chmod | None = None
    # Owner for parent directories of dest that the copy creates (BuildKit chowns them
    # like the copied files when --chown is given).
    chown_parents: bool = False


@dataclass(frozen=True)
class SourceItem:
    """One resolved source: its host path (top-level symlink already followed) and walk."""

    name: str  # base name, used when the source lands inside a directory
    path: Path
    entries: tuple[tuple[str, Path], ...]  # (path relative to the source, host path)

    @property
    def is_dir(self) -> bool:
        return self.path.is_dir()


def walk_tree(top: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, host path) for ``top`` ("") and everything below, dirs first, sorted."""
    yield "", top
    if not top.is_dir() or top.is_symlink():
        return
    stack = [("", top)]
    while stack:
        rel, path = stack.pop()
        children = sorted(os.scandir(path), key=lambda e: e.name)
        subdirs = []
        for child in children:
            child_rel = f"{rel}/{child.name}" if rel else child.name
            yield child_rel, Path(child.path)
            if child.is_dir(follow_symlinks=False):
                subdirs.append((child_rel, Path(child.path)))
        stack.extend(reversed(subdirs))


def copy_sources(
    root: Path, sources: Iterable[SourceItem], dest: str, *, force_dir: bool, opts: CopyOptions
) -> None:
    """Copy every source into the rootfs at ``root`` following docker's rules."""
    dest_clean = clean(dest)
    for source in sources:
        # Looked at again for each source: an earlier one may have made dest (fsutil
        # copy prepareTargetDir stats the destination per source).
        dest_host = resolve_in_root(root, dest_clean)
        dest_is_dir = force_dir or dest.endswith("/") or dest_host.is_dir()
        if source.is_dir:
            target = dest_clean
        elif dest_is_dir:
            target = posixpath.join(dest_clean, source.name)
        else:
            target = dest_clean
        _copy_one(root, source, target, opts)


def _copy_one(root: Path, source: SourceItem, target: str, opts: CopyOptions) -> None:
    dirs: dict[str, Path] = {}
    dir_times: list[tuple[Path, os.stat_result]] = []
    for rel, src in source.entries:
        container = posixpath.join(target, rel) if rel else target
        parent = _ensure_dir(root, posixpath.dirname(container), dirs, opts)
        host = parent / posixpath.basename(container) if container != "/" else root
        st = os.lstat(src) if rel else os.stat(src)
        if not rel and stat.S_ISDIR(st.st_mode):
            # A directory source copies its contents: BuildKit makes the destination
            # like a missing parent (0755, --chown owner) and leaves an existing one as
            # it is; neither the source dir's mode nor --chmod applies to it.
            dirs[container] = _ensure_dir(root, container, dirs, opts)
        elif stat.S_ISDIR(st.st_mode):
            _make_dir(host, st, opts)
            dirs[container] = host
            dir_times.append((host, st))
        else:
            replace_entry(host)
            _copy_entry(src, host, st, opts)
    # Directory mtimes last: writing their contents changed them.
    for host, st in reversed(dir_times):
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _ensure_dir(root: Path, container_dir: str, cache: dict[str, Path], opts: CopyOptions) -> Path:
    """The host path of a container dir, creating missing ones (0755, owner per opts).

    Iterative: a destination may have more components than the recursion limit.
    """
    missing: list[tuple[str, Path]] = []
    current = container_dir
    while current not in cache:
        host = resolve_in_root(root, current)
        if host.is_dir():
            cache[current] = host
            break
        missing.append((current, host))
        if current == "/":
            break
        current = posixpath.dirname(current)
    for current, host in reversed(missing):
        if host.exists() or host.is_symlink():
            raise BuildError(
                f"cannot copy to {current}: it exists and is not a directory",
                hint="choose a destination that is a directory or a new path",
            )
        os.mkdir(host, 0o755)
        os.chmod(host, 0o755)
        owner = opts.owner if opts.chown_parents else (0, 0)
        os.chown(host, *owner)
        cache[current] = host
    return cache[container_dir]


def _make_dir(host: Path, st: os.stat_result, opts: CopyOptions) -> None:
    if host.is_symlink() or (host.exists() and not host.is_dir()):
        replace_entry(host)
    if not host.exists():
        os.mkdir(host, 0o700)
    mode = stat.S_IMODE(st.st_mode)
    if opts.chmod is not None:
        mode = opts.chmod.apply(mode, is_dir=True)
    os.chown(host, *opts.owner)
    os.chmod(host, mode)


def replace_entry(host: Path) -> None:
    """Remove what stands at host so a copied entry can take its place."""
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        remove_tree(host)
    else:
        os.unlink(host)


def _copy_entry(src: Path, host: Path, st: os.stat_result, opts: CopyOptions) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), host)
        os.chown(host, *opts.owner, follow_symlinks=False)
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    if stat.S_ISREG(st.st_mode):
        _copy_file(src, host)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(host, 0o600)
    else:
        raise BuildError(
            f"cannot copy {src}: only files, directories and symlinks can be copied",
            hint="add it to .dockerignore",
        )
    os.chown(host, *opts.owner)
    os.chmod(host, opts.chmod.apply(mode, is_dir=False) if opts.chmod is not None else mode)
    os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_file(src: Path, dst: Path) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(src, "rb") as fin:
        fd = os.open(dst, flags, 0o600)
        with open(fd, "wb") as fout:
            size = os.fstat(fin.fileno()).st_size
            copied = 0
            try:
                while copied < size:
                    n = os.copy_file_range(fin.fileno(), fout.fileno(), size - copied)
                    if n == 0:
                        break
                    copied += n
            except OSError:
                fin.seek(copied)
                fout.seek(copied)
                shutil.copyfileobj(fin, fout, 1 << 20)
