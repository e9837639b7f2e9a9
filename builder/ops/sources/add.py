"""ADD's local tar archives: which sources are archives, and extracting them.

BuildKit unpacks a local source when its content is a tar, plain or compressed with
gzip, bzip2, xz or zstd (the file name does not matter); anything else is copied as a
file. Extraction stays inside the rootfs: member paths are cleaned (``..`` cannot climb
above the root) and symlinks already in the rootfs are resolved inside it.

URL and git sources are ``builder.ops.sources.remote``; they are never extracted.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import zstandard

from builder.errors import BuildError
from builder.ops.copyfiles import replace_entry
from builder.ops.rootpath import make_dirs, resolve_in_root
from builder.plan.paths import clean
from cache.errors import is_disk_full
from cache.layers import Compression, detect_compression, open_decompressed
from cache.tarcheck import UnsafeTarEntry, check_member


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
