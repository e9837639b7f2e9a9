"""COPY/ADD into a mounted rootfs, with docker's directory and trailing-slash rules.

The rules (Dockerfile reference, COPY): a directory source copies its *contents*; a file
source lands at ``dest`` unless ``dest`` ends in ``/`` or is an existing directory, in
which case it lands inside it; several sources need a ``dest`` ending in ``/``.

As BuildKit's fileop runs fsutil ``copy.Copy`` (solver/llbsolver/file/backend.go,
tonistiigi/fsutil copy/copy.go):

- Owner: ``--chown`` when given; otherwise each entry keeps its source's owner
  (``CopyOptions.owner`` None: ``COPY --from``), and context files are 0:0 (the client
  resets them when it sends the context, client/solve.go resetUIDAndGID).
- Modes and mtimes come from the source (``--chmod`` changes the mode).
- Missing parents of ``dest``, and ``dest`` itself for a directory source, are created
  0755, or with an octal ``--chmod``'s permission bits (fsutil 183e7fb: MkdirAll takes
  ``CopyInfo.Mode``; a symbolic ``--chmod`` leaves them 0755), owned by the ``--chown``
  owner or 0:0. An existing destination directory keeps its mode and owner.
- ``dest`` is resolved inside the root following every symlink, the last one too, so a
  link whose target does not exist yet gets that target created (``fs.RootPath``).
- Hard links between the files of one source stay hard links (fsutil getLinkSource).
- A unix socket becomes an empty regular file with the socket's permission bits (fsutil
  clears the socket bit: stat.go, and copyDevice makes a stub); devices and fifos are
  made as nodes.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.ops.rootpath import make_dirs, resolve_in_root
from builder.plan.chmod import Chmod
from builder.plan.paths import clean
from fstree.tree import remove_tree

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20  # read size, and the size from which copy_file_range is tried


@dataclass(frozen=True)
class CopyOptions:
    # None: every entry keeps its source's owner (COPY --from without --chown).
    owner: tuple[int, int] | None = (0, 0)
    chmod: Chmod | None = None
    # Owner for parent directories of dest that the copy creates (BuildKit chowns them
    # like the copied files when --chown is given).
    chown_parents: bool = False

    @property
    def dir_mode(self) -> int:
        """The mode of directories the copy creates (parents of dest, a dir's dest)."""
        if self.chmod is not None and self.chmod.octal is not None:
            return self.chmod.octal & 0o777  # Go's os.Chmod drops the raw special bits
        return 0o755

    @property
    def dir_owner(self) -> tuple[int, int]:
        return self.owner if self.chown_parents and self.owner is not None else (0, 0)

    def owner_of(self, st: os.stat_result) -> tuple[int, int]:
        return self.owner if self.owner is not None else (st.st_uid, st.st_gid)


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
    root: Path,
    sources: Iterable[SourceItem],
    dest: str,
    *,
    force_dir: bool,
    opts: CopyOptions,
    upper: Path | None = None,
) -> None:
    """Copy every source into the rootfs at ``root`` following docker's rules.

    ``upper``: the upper dir of the overlay mounted at ``root``. What lands in a dir the
    copy made there is then written straight into it (see ``_Dirs``).
    """
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
        # A file lands on dest with its symlinks followed, the last one too (fsutil
        # resolves dest with fs.RootPath), or inside the resolved dest dir as itself.
        dirs = _Dirs(root, upper, opts)
        _copy_one(dirs, source, target, opts, follow_last=not dest_is_dir)


def _copy_one(
    dirs: _Dirs, source: SourceItem, target: str, opts: CopyOptions, *, follow_last: bool
) -> None:
    root = dirs.root
    dir_times: list[tuple[Path, os.stat_result]] = []
    links: dict[tuple[int, int], Path] = {}  # (dev, inode) -> first copy, per source
    for rel, src in source.entries:
        container = posixpath.join(target, rel) if rel else target
        st = os.lstat(src) if rel else os.stat(src)
        if not rel and stat.S_ISDIR(st.st_mode):
            # A directory source copies its contents: BuildKit makes the destination
            # like a missing parent (dir_mode, --chown owner) and leaves an existing one
            # as it is; the source dir's mode does not apply to it.
            dirs.ensure(container)
            continue
        new = False
        if rel:
            parent = posixpath.dirname(container)
            host = dirs.ensure(parent) / posixpath.basename(container)
            new = parent in dirs.made
        else:
            host = resolve_in_root(root, container, follow_last=follow_last)
            if container != "/":
                make_dirs(root, host.parent, opts.dir_mode, opts.dir_owner)
        if stat.S_ISDIR(st.st_mode):
            dirs.add(container, host, made=_make_dir(host, st, opts, new=new))
            dir_times.append((host, st))
            continue
        if not new:
            replace_entry(host)
        first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
        if first is not None and stat.S_ISREG(st.st_mode):
            os.link(dirs.beside(first, host), host, follow_symlinks=False)
            continue
        _copy_entry(src, host, st, opts)
        if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
            links[(st.st_dev, st.st_ino)] = host
    # Directory mtimes last: writing their contents changed them.
    for host, st in reversed(dir_times):
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


class _Dirs:
    """The container dirs one source's copy has met: where their entries are written.

    ``made`` holds those the copy created, empty when made: an entry of the walk lands
    in one without anything to replace (a walk never yields a path twice). With the
    overlay's ``upper`` dir known, entries of a made dir are written straight into its
    upper copy, not through the overlay (twice as fast per file): a made dir is new or
    opaque, so it has nothing below it in the lowers, and the overlay never looked up
    the names written there, so it has nothing cached about them (it reads a dir
    without lowers straight from the upper). The layer is the upper dir either way.
    """

    def __init__(self, root: Path, upper: Path | None, opts: CopyOptions) -> None:
        self.root, self._upper, self._opts = root, upper, opts
        self._hosts: dict[str, Path] = {}
        self.made: set[str] = set()

    def add(self, container_dir: str, host: Path, *, made: bool) -> None:
        """Record a dir at ``host`` (a path in the overlay, or in the upper when made in
        a made dir) and where its entries go."""
        if made:
            self.made.add(container_dir)
            if self._upper is not None and host.is_relative_to(self.root):
                direct = self._upper / host.relative_to(self.root)
                # The overlay made it in the upper (a copy snapshotter would not have).
                host = direct if direct.is_dir() else host
        self._hosts[container_dir] = host

    def ensure(self, container_dir: str) -> Path:
        """Where the entries of a container dir are written, creating missing dirs
        (dir_mode, dir_owner).

        Missing directories are made along the resolved host path, so a symlink to a
        directory that does not exist yet gets its target made inside the root.
        """
        known = self._hosts.get(container_dir)
        if known is not None:
            return known
        host = resolve_in_root(self.root, container_dir)
        made = not host.is_dir()
        if made:
            make_dirs(self.root, host, self._opts.dir_mode, self._opts.dir_owner)
        self.add(container_dir, host, made=made)
        return self._hosts[container_dir]

    def beside(self, first: Path, host: Path) -> Path:
        """``first`` (a file this copy wrote) named on ``host``'s side, overlay or upper,
        so the two can be hard-linked."""
        upper = self._upper
        if upper is None or first.is_relative_to(upper) == host.is_relative_to(upper):
            return first
        if host.is_relative_to(upper):
            return upper / first.relative_to(self.root)
        return self.root / first.relative_to(upper)


def _make_dir(host: Path, st: os.stat_result, opts: CopyOptions, *, new: bool) -> bool:
    """Make ``host`` the copy of a source dir (mode, owner); True when it was created.

    ``new``: its parent was made by this copy, so nothing stands at ``host``.
    """
    exists = False
    if not new:
        try:
            exists = stat.S_ISDIR(os.lstat(host).st_mode)
        except FileNotFoundError:
            pass
        else:
            if not exists:  # a file or a symlink (even to a dir) gives way
                replace_entry(host)
    if not exists:
        os.mkdir(host, 0o700)
    mode = stat.S_IMODE(st.st_mode)
    if opts.chmod is not None:
        mode = opts.chmod.apply(mode, is_dir=True)
    os.chown(host, *opts.owner_of(st))
    os.chmod(host, mode)
    return not exists


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
    owner = opts.owner_of(st)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), host)
        os.chown(host, *owner, follow_symlinks=False)
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    if opts.chmod is not None:
        mode = opts.chmod.apply(mode, is_dir=False)
    if stat.S_ISREG(st.st_mode):
        _copy_file(src, host, st, mode, owner)
        return
    if stat.S_ISSOCK(st.st_mode):
        # fsutil copyDevice clears S_IFSOCK before mknod ("socket copied as stub"), and
        # its context sender sends a socket as a file it cannot open: both leave an
        # empty regular file.
        os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(host, 0o600)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        _make_device(src, host, st)
    else:
        raise BuildError(
            f"cannot copy {src}: only files, directories, symlinks, sockets, fifos and "
            "devices can be copied",
            hint="add it to .dockerignore",
        )
    os.chown(host, *owner)
    os.chmod(host, mode)
    os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))


def _make_device(src: Path, host: Path, st: os.stat_result) -> None:
    try:
        os.mknod(host, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
    except PermissionError:
        raise BuildError(
            f"cannot copy device {src}: creating device nodes needs root",
            hint="add it to .dockerignore, or build as root",
        ) from None


def _copy_file(
    src: Path, host: Path, st: os.stat_result, mode: int, owner: tuple[int, int]
) -> None:
    """Create ``host`` with ``src``'s content, then ``owner``, ``mode`` and ``st``'s times.

    All through the new file's descriptor, and an owner or mode is set only when the new
    file does not have it already: each is a metadata write, and a COPY makes thousands.
    """
    # Created with its final permission bits, unless special ones: writing or a chown
    # would clear those again, so they come last, by fchmod.
    create_mode = 0o600 if mode & 0o7000 else mode
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fout = os.open(host, _CREATE, create_mode)
        try:
            _copy_data(fin, fout, os.fstat(fin).st_size)
            made = os.fstat(fout)  # the umask, a setgid dir or a default ACL may differ
            chown = (made.st_uid, made.st_gid) != owner
            if chown:
                os.fchown(fout, *owner)
            if chown or stat.S_IMODE(made.st_mode) != mode:
                os.fchmod(fout, mode)
            os.utime(fout, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_data(fin: int, fout: int, size: int) -> None:
    """Copy ``size`` bytes (less if the file shrank): in the kernel for a large file when
    both sides allow it (``copy_file_range``, e.g. not across an overlay), else by
    reads and writes sized to the file."""
    copied = 0
    if size >= _CHUNK:
        try:
            while copied < size:
                n = os.copy_file_range(fin, fout, size - copied)
                if n == 0:
                    return
                copied += n
            return
        except OSError:
            os.lseek(fin, copied, os.SEEK_SET)
            os.lseek(fout, copied, os.SEEK_SET)
    while copied < size:
        chunk = os.read(fin, min(size - copied, _CHUNK))
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(fout, view) :]
        copied += len(chunk)
