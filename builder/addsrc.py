"""ADD of a local tar archive: detected by content and extracted into the destination.

BuildKit unpacks a local source when its content is a tar, plain or compressed with
gzip, bzip2, xz or zstd (the file name does not matter); anything else is copied as a
file. Extraction stays inside the rootfs: member paths are cleaned (``..`` cannot climb
above the root) and symlinks already in the rootfs are resolved inside it.
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
from builder.rootpath import clean, resolve_in_root

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    with open(path, "rb") as raw:
        stream: IO[bytes] = raw
        if raw.read(4) == _ZSTD_MAGIC:
            stream = zstandard.ZstdDecompressor().stream_reader(raw, closefd=False)
        raw.seek(0)
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
    root: Path, archive: Path, dest: str, owner: tuple[int, int] | None, umask_dirs: int = 0o755
) -> None:
    """Extract ``archive`` into container directory ``dest`` of the rootfs at ``root``.

    ``owner`` overrides the archive's uid/gid (``--chown``); None keeps them.
    """
    dest_dir = clean(dest)
    try:
        with _open_tar(archive) as tar:
            for member in tar:
                _extract_member(root, tar, member, dest_dir, owner, umask_dirs)
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise BuildError(f"cannot extract {archive.name}: {exc}") from None


def _parent(root: Path, container_dir: str, mode: int) -> Path:
    host = resolve_in_root(root, container_dir)
    if not host.is_dir():
        if container_dir != "/":
            _parent(root, posixpath.dirname(container_dir), mode)
        if host.exists() or host.is_symlink():
            raise BuildError(f"cannot extract into {container_dir}: not a directory")
        os.mkdir(host, mode)
        os.chmod(host, mode)
    return host


def _extract_member(
    root: Path,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: str,
    owner: tuple[int, int] | None,
    dir_mode: int,
) -> None:
    container = clean(posixpath.join(dest, member.name.lstrip("/")))
    if container == dest and member.isdir():
        return
    host = _parent(root, posixpath.dirname(container), dir_mode) / posixpath.basename(container)
    uid, gid = owner if owner is not None else (member.uid, member.gid)
    if member.isdir():
        if not host.is_dir() or host.is_symlink():
            _remove(host)
            os.mkdir(host, 0o700)
    else:
        _remove(host)
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


def _remove(host: Path) -> None:
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(host)
    else:
        os.unlink(host)
