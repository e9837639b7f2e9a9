"""ADD's own sources: local tar archives (extracted), http(s) URLs and git repositories.

BuildKit unpacks a local source when its content is a tar, plain or compressed with
gzip, bzip2, xz or zstd (the file name does not matter); anything else is copied as a
file. Extraction stays inside the rootfs: member paths are cleaned (``..`` cannot climb
above the root) and symlinks already in the rootfs are resolved inside it.

Remote sources (``RemoteSources``) are keyed by what they hold, as BuildKit keys them: a
URL by its ``--checksum`` or else by the digest (and Last-Modified time) of a download
made while keying, which the step then reuses; a git source by the commit its ref
resolves to, its subdir and ``--keep-git-dir``. Remote files are never extracted.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zstandard

from builder.errors import BuildError
from builder.ops.copyfiles import SourceItem, replace_entry, walk_tree
from builder.ops.rootpath import clean, make_dirs, resolve_in_root
from builder.ops.sources import http as remote
from builder.ops.sources.git import GitRef, checkout, parse_git_ref, resolve_commit
from cache.errors import is_disk_full
from cache.layers import Compression, detect_compression, open_decompressed
from cache.tarcheck import UnsafeTarEntry, check_member
from fstree.tree import remove_tree


@contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    with open(path, "rb") as raw:
        stream: IO[bytes] = raw
        head = raw.read(4)
        raw.seek(0)
        # tarfile detects gzip, bzip2 and xz itself; zstd it does not know.
        if detect_compression(head) is Compression.ZSTD:
            stream = open_decompressed(raw, Compression.ZSTD)
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            yield tar


def is_archive(path: Path) -> bool:
    """True when ``path`` is a regular file holding a (possibly compressed) tar."""
    if not path.is_file():
        return False
    try:
        with _open_tar(path) as tar:
            return tar.next() is not None
    except (tarfile.TarError, zstandard.ZstdError, OSError, EOFError):
        return False


def extract_archive(
    root: Path,
    archive: Path,
    dest: str,
    owner: tuple[int, int] = (0, 0),
    dir_mode: int = 0o755,
    *,
    members: tuple[int, int] | None = None,
) -> None:
    """Extract ``archive`` into container directory ``dest`` of the rootfs at ``root``.

    As BuildKit (solver/llbsolver/file/unpack.go): the entries keep the archive's
    modes (``--chmod`` does not apply to them) and its uid/gid, unless ``members`` (the
    ``--chown`` owner, BuildKit 0.23+ ``TarOptions.ChownOpts``) replaces the owner of
    every entry the archive lists; ``dest`` and its missing parents are created
    ``dir_mode`` and owned by ``owner``, an existing ``dest`` is left as it is;
    directories the archive implies without an entry are 0:0 (go-archive
    createImpliedDirectories).
    """
    dest_dir = clean(dest)
    _parent(root, dest_dir, dir_mode, owner)
    try:
        with _open_tar(archive) as tar:
            for member in tar:
                check_member(member, archive.name)
                _extract_member(root, tar, member, dest_dir, dir_mode, members)
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise BuildError(f"cannot extract {archive.name}: {exc}") from None
    except UnsafeTarEntry as exc:
        raise BuildError(exc.message, hint=exc.hint) from None
    except OSError as exc:
        if is_disk_full(exc):
            raise
        raise BuildError(
            f"cannot extract {archive.name}: {exc.strerror or exc}",
            hint="the archive holds an entry this file system cannot take",
        ) from None


def _parent(root: Path, container_dir: str, mode: int, owner: tuple[int, int] = (0, 0)) -> Path:
    """The host dir of ``container_dir``, making missing ones along its resolved path
    (a symlink whose target does not exist yet gets it made inside the root)."""
    host = resolve_in_root(root, container_dir)
    if not host.is_dir():
        make_dirs(root, host, mode, owner)
    return host


def _extract_member(
    root: Path,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: str,
    dir_mode: int,
    owner: tuple[int, int] | None,
) -> None:
    container = clean(posixpath.join(dest, member.name.lstrip("/")))
    if container == dest and member.isdir():
        return
    host = _parent(root, posixpath.dirname(container), dir_mode) / posixpath.basename(container)
    uid, gid = owner if owner is not None else (member.uid, member.gid)
    if member.isdir():
        if not host.is_dir() or host.is_symlink():
            replace_entry(host)
            os.mkdir(host, 0o700)
    else:
        replace_entry(host)
        if member.issym():
            os.symlink(member.linkname, host)
        elif member.islnk():
            target = resolve_in_root(root, posixpath.join(dest, member.linkname.lstrip("/")))
            os.link(target, host)
            return
        elif member.isreg():
            _write(tar, member, host)
        elif member.isfifo():
            os.mkfifo(host, 0o600)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(host, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        else:
            return
    os.chown(host, uid, gid, follow_symlinks=False)
    if not member.issym():
        os.chmod(host, member.mode & 0o7777)
    os.utime(host, (member.mtime, member.mtime), follow_symlinks=False)


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, host: Path) -> None:
    source = tar.extractfile(member)
    fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(fd, "wb") as out:
        if source is not None:
            shutil.copyfileobj(source, out, 1 << 20)


@dataclass(frozen=True)
class RemoteSource:
    """One ADD source that is not in the context: a URL (``git`` None) or a git repo."""

    source: str  # as written, after expansion
    git: GitRef | None
    checksum: str | None = None
    keep_git_dir: bool = False


def remote_source(source: str, checksum: str | None, keep_git_dir: bool) -> RemoteSource | None:
    """``source`` as a RemoteSource, or None when it is a local path.

    A URL that does not parse (``http://[::1``, a port out of range) is a BuildError."""
    if remote.is_url(source):
        remote.check_url(source)
    git = parse_git_ref(source)
    if git is not None:
        return RemoteSource(source, git, checksum, keep_git_dir)
    if remote.is_url(source):
        return RemoteSource(source, None, checksum)
    return None


class _Fetches:
    """What keying learnt (downloads, resolved commits), reused when the step runs.

    Per action, shared by its key and execute calls (which may run on several threads);
    downloads live in a private temp dir removed when this object goes away.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, remote.Fetched] = {}
        self._commits: dict[str, str] = {}
        self._dirs: list[str] = []
        weakref.finalize(self, _remove_dirs, self._dirs)

    def download(self, src: RemoteSource, scratch: Path) -> remote.Fetched:
        with self._lock:
            known = self._files.get(src.source)
            if known is not None and known.path.exists():
                return known
            folder = Path(tempfile.mkdtemp(prefix="remote-", dir=scratch))
            self._dirs.append(str(folder))
            # A file fetched again must be the one the key was made from.
            expected = known.digest if known is not None else src.checksum
            fetched = remote.fetch(src.source, folder, expected)
            self._files[src.source] = fetched
            return fetched

    def commit(self, src: RemoteSource, git: GitRef) -> str:
        with self._lock:
            if src.source not in self._commits:
                self._commits[src.source] = resolve_commit(git)
            return self._commits[src.source]


def _remove_dirs(dirs: list[str]) -> None:
    for folder in dirs:
        remove_tree(folder, ignore_errors=True)


@dataclass(frozen=True)
class RemoteSources:
    """ADD's URL and git sources: their key pairs and the items they copy."""

    entries: tuple[RemoteSource, ...]
    _fetches: _Fetches = field(default_factory=_Fetches, compare=False, repr=False)

    def key_pairs(self, scratch: Path) -> tuple[tuple[str, str], ...]:
        """(name, identity) per source; may download or ask a git remote (see module doc)."""
        pairs = []
        for src in self.entries:
            if src.git is not None:
                commit = self._fetches.commit(src, src.git)
                keep = "keep-git-dir" if src.keep_git_dir else "no-git-dir"
                value = f"{commit}:{src.git.subdir} {keep}"
                pairs.append((f"git:{remote.redact(src.git.remote)}", value))
            elif src.checksum is not None:
                pairs.append((f"url:{remote.redact(src.source)}", src.checksum))
            else:
                fetched = self._fetches.download(src, scratch)
                value = f"{fetched.digest} mtime={fetched.mtime}"
                pairs.append((f"url:{remote.redact(src.source)}", value))
        return tuple(pairs)

    def items(self, scratch: Path) -> list[SourceItem]:
        """The sources as copy items, staged under ``scratch``."""
        out = []
        for i, src in enumerate(self.entries):
            folder = scratch / f"remote-{i}"
            if src.git is not None:
                commit = self._fetches.commit(src, src.git)
                top = checkout(src.git, commit, folder, keep_git_dir=src.keep_git_dir)
                os.chmod(top, 0o755)
                out.append(SourceItem(name=top.name, path=top, entries=tuple(walk_tree(top))))
                continue
            fetched = self._fetches.download(src, scratch)
            folder.mkdir()
            path = folder / remote.url_filename(src.source)
            shutil.copyfile(fetched.path, path)
            os.chmod(path, remote.REMOTE_MODE)
            os.utime(path, (fetched.mtime, fetched.mtime))
            out.append(SourceItem(name=path.name, path=path, entries=(("", path),)))
        return out
