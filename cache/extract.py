"""Extracting a layer blob: into the overlay lower-dir form, or applied onto a plain tree.

It never follows a symlink inside ``dest``: every path is walked from a dirfd with
O_NOFOLLOW, so no entry, link or symlink in the tar can write outside it. Whiteouts
(image-spec layer.md "Whiteouts") become overlay whiteouts (0/0 char devices, or where
the filesystem refuses them the xattr form of :mod:`fstree.whiteout`; the
``trusted.overlay.opaque`` xattr) in overlay mode, and deletions in apply mode.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from cache.digest import Digest, Sha256
from cache.errors import CacheError, LayerError
from cache.layers import (
    FORMAT_ERRORS,
    OPAQUE_MARKER,
    OVERLAY_XATTR_PREFIXES,
    OWNER_XATTR,
    PAX_XATTR,
    WHITEOUT_PREFIX,
    Compression,
    TarPipe,
    detect_compression,
    open_decompressed,
)
from cache.oci import Descriptor
from cache.store import BlobStore
from cache.tarcheck import check_member
from fstree import whiteout
from fstree.tree import remove_entry

_CHUNK = 1 << 20


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _TarSource(TarPipe):
    """Decompressed tar bytes, hashed on the way to tarfile (the diff_id)."""

    def __init__(self, stream: _Readable) -> None:
        self._stream = stream
        self.diff = Sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        self.diff.update(data)
        return data


def extract_layer(
    blobs: BlobStore, layer: Descriptor, dest: Path, *, mode: str = "overlay"
) -> Digest:
    """Extract a layer blob into ``dest``; returns its diff_id.

    mode="overlay": ``dest`` (empty) gets the overlay lower-dir form (whiteouts as 0/0
    char devices, opaque dirs as ``trusted.overlay.opaque=y``; needs root).
    mode="apply": the layer is applied onto the tree in ``dest`` (whiteouts delete).
    The blob's digest is verified (DigestMismatch); a malformed or hostile tar raises
    LayerError. Partial output is left for the caller, who extracts into a temp dir.
    """
    if mode not in ("overlay", "apply"):
        raise LayerError(f"unknown extraction mode {mode!r}", hint="use 'overlay' or 'apply'")
    actual_size = blobs.size(layer.digest)
    if actual_size != layer.size:
        raise LayerError(
            f"layer {layer.digest}: descriptor says {layer.size} bytes, blob has {actual_size}"
        )
    with open(blobs.path(layer.digest), "rb") as f:
        compression = detect_compression(f.read(8))
    with blobs.open(layer.digest) as raw:
        try:
            with _Extractor(dest, overlay=mode == "overlay") as ex:
                diff_id = _extract_stream(raw, compression, ex, f"layer {layer.digest}")
        except FORMAT_ERRORS as exc:
            _drain(raw)  # a corrupt blob explains a broken tar best: DigestMismatch
            msg = f"layer {layer.digest} is not a valid {compression.value} tar: {exc}"
            raise LayerError(msg) from None
        except CacheError:
            raise
        except OSError as exc:
            raise LayerError(f"cannot extract layer {layer.digest} into {dest}: {exc}") from None
    return diff_id


def _extract_stream(raw: BinaryIO, compression: Compression, ex: _Extractor, where: str) -> Digest:
    source = _TarSource(open_decompressed(raw, compression))
    with tarfile.open(fileobj=source, mode="r|", errors="surrogateescape") as tar:
        while (member := tar.next()) is not None:
            check_member(member, where)
            ex.add(member, tar)
            # Stream mode keeps every member (an undocumented list); drop them so
            # memory stays flat however many files the layer has.
            tar.members.clear()  # type: ignore[attr-defined]
    _drain(source)
    _drain(raw)  # to EOF, where the store verifies the digest
    ex.finish()
    return source.diff.digest()


def _drain(stream: _Readable) -> None:
    while stream.read(_CHUNK):
        pass


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _Extractor:
    """Writes tar members under ``dest``, walking every path from a dirfd with O_NOFOLLOW.

    Directory metadata is applied in ``finish``: adding children changes a dir's mtime,
    and a read-only dir mode would stop an unprivileged caller from adding them.
    """

    def __init__(self, dest: Path, *, overlay: bool) -> None:
        self._overlay = overlay
        self._root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._chown = os.geteuid() == 0
        self._seen: set[str] = set()  # paths this layer made (kept by an opaque marker)
        self._xattr_whiteouts = False
        self._dirs: dict[tuple[str, ...], tarfile.TarInfo] = {}
        # The last parent dir opened. Safe to reuse: anything removed is a child of the
        # dir just opened, so a cached dir is never itself removed or replaced.
        self._cache: tuple[tuple[str, ...], int] | None = None

    def __enter__(self) -> _Extractor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._drop_cache()
        os.close(self._root)

    def add(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        parts = _split(member.name)
        if not parts:
            return  # the layer root ("./"): the parent of the layer decides its attributes
        if parts[-1].startswith(WHITEOUT_PREFIX):
            self._whiteout(parts)
            return
        pfd, base = self._parent(parts[:-1]), parts[-1]
        self._seen.add("/".join(parts))
        existing = _lstat(pfd, base)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                self._remove(pfd, base, existing)
                os.mkdir(base, 0o700, dir_fd=pfd)
            self._dirs[parts] = member
            return
        self._remove(pfd, base, existing)
        if member.isreg():
            self._file(pfd, base, member, tar)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
            self._meta(pfd, base, member, chmod=False)
        elif member.islnk():
            self._hardlink(pfd, base, member)
        elif member.ischr() or member.isblk():
            self._device(pfd, base, member)
        elif member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=pfd)
            self._meta(pfd, base, member)
        else:
            raise LayerError(f"{member.name}: unsupported tar entry type {member.type!r}")

    def finish(self) -> None:
        """Apply directory metadata, deepest first."""
        self._drop_cache()
        for parts in sorted(self._dirs, key=len, reverse=True):
            try:
                fd = self._open_dir(parts, create=False)
            except (FileNotFoundError, LayerError):
                continue  # removed or replaced later in the same layer
            try:
                self._fd_meta(fd, self._dirs[parts])
            finally:
                os.close(fd)

    def _drop_cache(self) -> None:
        if self._cache is not None:
            os.close(self._cache[1])
            self._cache = None

    def _parent(self, parts: tuple[str, ...]) -> int:
        if self._cache is not None and self._cache[0] == parts:
            return self._cache[1]
        fd = self._open_dir(parts, create=True)
        self._drop_cache()
        self._cache = (parts, fd)
        return fd

    def _open_dir(self, parts: tuple[str, ...], *, create: bool) -> int:
        """A new fd for dest/parts; missing dirs are made (mode 0755) when ``create``."""
        fd = os.dup(self._root)
        try:
            for i, comp in enumerate(parts):
                try:
                    nxt = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    self._seen.add("/".join(parts[: i + 1]))
                    nxt = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LayerError(
                    f"{'/'.join(parts)}: a parent is a symlink or not a directory; "
                    "refusing to extract through it",
                    hint="the layer may be malformed or hostile",
                ) from None
            raise
        return fd

    def _exists(self, parts: tuple[str, ...]) -> bool:
        try:
            os.close(self._open_dir(parts, create=False))
        except FileNotFoundError:
            return False
        return True

    def _remove(self, pfd: int, name: str, st: os.stat_result | None) -> None:
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            remove_entry(pfd, name)  # any depth: a lower layer may hold a very deep tree
        else:
            os.unlink(name, dir_fd=pfd)

    def _whiteout(self, parts: tuple[str, ...]) -> None:
        parent, base = parts[:-1], parts[-1]
        if not self._overlay and not self._exists(parent):
            return  # nothing below a missing dir to delete; do not make it either
        pfd = self._parent(parent)
        if base == OPAQUE_MARKER:
            if self._overlay:
                _set_opaque(pfd)
            else:
                self._prune(pfd, parent)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk, ...): meaningless here
        name = base[len(WHITEOUT_PREFIX) :]
        if name in (".", ".."):
            raise LayerError(f"refusing whiteout {'/'.join(parts)!r}: it names {name!r}")
        self._remove(pfd, name, _lstat(pfd, name))
        if self._overlay:
            self._write_whiteout(pfd, (*parent, name))

    def _write_whiteout(self, pfd: int, parts: tuple[str, ...]) -> None:
        """A 0/0 char device, or the xattr form where the filesystem refuses one
        (:mod:`fstree.whiteout`: a store on a container's own overlayfs root)."""
        try:
            if whiteout.make(parts[-1], pfd) and not self._xattr_whiteouts:
                whiteout.mark(self._root)
                self._xattr_whiteouts = True
        except OSError as exc:
            raise LayerError(
                f"cannot record the deletion of {'/'.join(parts)!r}: {exc.strerror or exc}",
                hint="the store's filesystem refuses both a 0/0 character device and a "
                "user xattr: put the store (PYBUILD_ROOT) on another filesystem",
            ) from None
        self._seen.add("/".join(parts))

    def _prune(self, fd: int, prefix: tuple[str, ...]) -> None:
        """Opaque dir in apply mode: delete everything below it this layer did not make.

        Iterative (a stack of dirs to visit, each reopened from the root), so the depth
        of what this layer made below it is not bounded by the interpreter's stack.
        """
        todo = [prefix]
        while todo:
            parts = todo.pop()
            sub = fd if parts == prefix else self._open_dir(parts, create=False)
            try:
                todo.extend(self._prune_one(sub, parts))
            finally:
                if sub != fd:
                    os.close(sub)

    def _prune_one(self, fd: int, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        """Remove what this layer did not make in the dir ``fd``; return the dirs it
        made there, whose contents need the same treatment."""
        with os.scandir(fd) as it:
            names = [e.name for e in it]
        keep = []
        for name in names:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if "/".join((*prefix, name)) not in self._seen:
                self._remove(fd, name, st)
            elif stat.S_ISDIR(st.st_mode):
                keep.append((*prefix, name))
        return keep

    def _file(self, pfd: int, base: str, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=pfd)
        with open(fd, "wb", buffering=_CHUNK) as out:
            src = tar.extractfile(member)
            if src is not None:
                shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            self._fd_meta(out.fileno(), member)

    def _hardlink(self, pfd: int, base: str, member: tarfile.TarInfo) -> None:
        target = _split(member.linkname)
        if not target or (self._overlay and "/".join(target) not in self._seen):
            raise LayerError(f"{member.name}: hard link to {member.linkname!r} outside the layer")
        try:
            tfd = self._open_dir(target[:-1], create=False)
        except FileNotFoundError:
            msg = f"{member.name}: hard link target {member.linkname!r} missing"
            raise LayerError(msg) from None
        try:
            os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _device(self, pfd: int, base: str, member: tarfile.TarInfo) -> None:
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        try:
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
        except PermissionError:
            return  # unprivileged callers cannot make device nodes; the contract skips them
        self._meta(pfd, base, member)

    def _fd_meta(self, fd: int, member: tarfile.TarInfo) -> None:
        # Order matters: chown clears setuid bits and security.capability.
        if self._chown:
            _chown(member, fd)
        os.chmod(fd, member.mode)
        for name, value in _xattrs(member):
            try:
                os.setxattr(fd, name, value)
            except OSError:
                continue  # unsupported here or not permitted: skipped, as documented
        os.utime(fd, ns=(_ns(member), _ns(member)))

    def _meta(self, pfd: int, base: str, member: tarfile.TarInfo, *, chmod: bool = True) -> None:
        via_fd = f"/proc/self/fd/{pfd}/{base}"  # setxattr has no dir_fd form
        if self._chown:
            _chown(member, None, via_fd)
        if chmod:  # never a symlink here, and we just made it: nothing to follow
            os.chmod(base, member.mode, dir_fd=pfd)
        for name, value in _xattrs(member):
            try:
                os.setxattr(via_fd, name, value, follow_symlinks=False)
            except OSError:
                continue
        os.utime(base, ns=(_ns(member), _ns(member)), dir_fd=pfd, follow_symlinks=False)


def _chown(member: tarfile.TarInfo, fd: int | None, via: str | None = None) -> None:
    """chown ``fd`` (or the path ``via``, not following symlinks) to the tar's ids.

    In a rootless user namespace with a single-id mapping an id it does not map is
    refused (EINVAL): the entry stays owned by the user, and the tar's ids are kept in
    :data:`OWNER_XATTR` for the layer writer (not possible on symlinks: user xattrs)."""
    try:
        if fd is not None:
            os.chown(fd, member.uid, member.gid)
        else:
            os.chown(str(via), member.uid, member.gid, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        ids = f"{member.uid}:{member.gid}".encode()
        with contextlib.suppress(OSError):
            if fd is not None:
                os.setxattr(fd, OWNER_XATTR, ids)
            else:
                os.setxattr(str(via), OWNER_XATTR, ids, follow_symlinks=False)


def _set_opaque(dir_fd: int) -> None:
    """Mark a dir opaque: ``trusted.overlay.opaque`` as host root, else (rootless, read
    by overlayfs mounted with ``userxattr``) ``user.overlay.opaque``."""
    try:
        os.setxattr(dir_fd, "trusted.overlay.opaque", b"y")
    except PermissionError:
        _overlay_call(os.setxattr, dir_fd, "user.overlay.opaque", b"y")


def _split(name: str) -> tuple[str, ...]:
    """Archive name -> path components; refuses absolute paths and ``..``."""
    if name.startswith("/"):
        raise LayerError(f"refusing absolute path {name!r} in layer", hint="the layer is unsafe")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise LayerError(f"refusing path {name!r} with '..' in layer", hint="the layer is unsafe")
    return parts


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        name = key.removeprefix(PAX_XATTR)
        # A layer never gets to forge overlay metadata (opaque, redirect, metacopy).
        if name != key and not name.startswith(OVERLAY_XATTR_PREFIXES) and name != OWNER_XATTR:
            yield name, value.encode("utf-8", "surrogateescape")


def _ns(member: tarfile.TarInfo) -> int:
    return int(member.mtime * 1_000_000_000)


def _overlay_call(func: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Make an overlay whiteout or opaque mark; only root (CAP_SYS_ADMIN, CAP_MKNOD) can."""
    try:
        func(*args, **kwargs)
    except PermissionError:
        raise LayerError(
            "cannot write overlay opaque marks without privileges",
            hint="run as root, or extract with mode='apply'",
        ) from None
