"""Blobs by digest: ``<root>/blobs/sha256/<hex>``, written atomically, verified on read.

Many pybuild processes may share one root. Writes go to a temp file in ``<root>/tmp``
(same filesystem), are fsynced and renamed into place, so a blob path either does not
exist or holds the complete content. A blob whose bytes went bad later (disk, a stray
write) is never kept by a writer: committing the same digest again replaces it, and
``put_bytes`` and ``intact`` check what is there before they trust it. Every temp file
or dir made here is held under an ``flock`` while in use; ``clean_tmp`` removes only old
entries nobody holds.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cache import writeback
from cache.digest import Digest, Sha256, sha256_bytes, sha256_file, verify
from cache.errors import (
    BlobNotFound,
    CacheError,
    InvalidDigest,
    StoreLocked,
    disk_full,
    is_disk_full,
)
from fstree.spread import spread_children
from fstree.tree import remove_tree

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_CHUNK = 1 << 20
# Temp entries made here are locked while in use; others' (e.g. mkdtemp dirs) are not,
# so age is their only protection: a day outlasts any build step we expect.
DEFAULT_TMP_GRACE = 24 * 3600.0
_LOCK_POLL = 0.05
# What to do when a stored blob no longer matches its digest: repair drops it (and the
# records and tags that need it), and the next build, pull or load writes it afresh.
CORRUPT_HINT = (
    "the store's copy is corrupt; run `pybuild cache verify --repair`, "
    "then build, pull or load the image again"
)


@contextmanager
def exclusive_lock(path: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the with-block.

    Blocks until the lock is free, or raises StoreLocked after ``timeout`` seconds.
    Lock files are never deleted: unlinking a lock file lets two holders race.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _acquire(fd, path, timeout)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(fd: int, path: Path, timeout: float | None) -> None:
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StoreLocked(
                    f"{path} is locked by another process",
                    hint="another pybuild is using the store; wait for it or retry",
                ) from None
            time.sleep(_LOCK_POLL)


class BlobWriter:
    """A blob being written: ``write`` hashes while writing; the store commits it.

    ``digest`` is readable only after the with-block of ``BlobStore.writer`` committed.
    """

    def __init__(self, fd: int, tmp_path: Path) -> None:
        self._file = io.FileIO(fd, "wb", closefd=True)
        self._hash = Sha256()
        self._digest: Digest | None = None
        self.tmp_path = tmp_path
        self._flushed = 0  # bytes handed to writeback so far (writeback.start)

    @property
    def size(self) -> int:
        """Bytes written so far (the blob's size once committed)."""
        return self._hash.size

    @property
    def digest(self) -> Digest:
        """The committed blob's digest; CacheError if the blob is not committed yet."""
        if self._digest is None:
            raise CacheError("blob digest read before the blob was committed")
        return self._digest

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data`` to the blob; returns its length."""
        self._hash.update(data)
        view = memoryview(data)
        with _disk_full_as_error("cannot write a blob", self.tmp_path.parent):
            while view:
                written = self._file.write(view)
                if written is None:  # only for non-blocking files, which this is not
                    raise CacheError(f"short write to {self.tmp_path}")
                view = view[written:]
        if self.size - self._flushed >= writeback.STEP:
            # Start writing what a big blob has so far to disk now, while it is being
            # made, so that the fsync at the end waits for the last few MiB only.
            writeback.start(self._file.fileno(), self._flushed, self.size - self._flushed)
            self._flushed = self.size
        return len(data)

    def _finish(self) -> Digest:
        """Flush to disk and close; returns the content digest."""
        with _disk_full_as_error("cannot write a blob", self.tmp_path.parent):
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        return self._hash.digest()

    def _abort(self) -> None:
        self._file.close()

    def _set_digest(self, digest: Digest) -> None:
        self._digest = digest


class _VerifyingRaw(io.RawIOBase):
    """Reads a blob file and raises DigestMismatch at EOF when its content is corrupt."""

    def __init__(self, path: Path, expected: Digest) -> None:
        super().__init__()
        self._file = io.FileIO(path, "rb")
        self._hash = Sha256()
        self._expected = expected

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        n = self._file.readinto(view)
        if n:
            self._hash.update(view[:n])
        else:
            # EOF: every later read re-checks, so a caller cannot miss the error.
            verify(self._expected, self._hash.digest(), f"blob {self._expected}", hint=CORRUPT_HINT)
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


class BlobStore:
    """Content-addressed blobs under ``root``; safe to share between processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self._blob_dir = root / "blobs" / "sha256"
        self._lock_dir = root / "locks"
        try:
            self._blob_dir.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"cannot create the store at {root}: {exc.strerror}",
                hint="set PYBUILD_ROOT to a writable directory",
            ) from None
        # Every step's upper dir and every unpacked layer is made here: spread them
        # over the disk, off the groups a removed layer or store just emptied.
        spread_children(self.tmp_dir)

    def _blob_path(self, digest: Digest) -> Path:
        return self._blob_dir / digest.hex

    def has(self, digest: Digest) -> bool:
        return self._blob_path(digest).is_file()

    def path(self, digest: Digest) -> Path:
        """The blob's file (read it only through ``open`` unless you verify it yourself)."""
        p = self._blob_path(digest)
        if not p.is_file():
            raise _not_found(digest)
        return p

    def size(self, digest: Digest) -> int:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise _not_found(digest) from None

    def intact(self, digest: Digest) -> bool:
        """True when the blob is present and its content matches its digest (reads it all).

        Writers that would skip a blob the store already has ask this first, so a blob
        gone bad is written again (and replaced) instead of being kept.
        """
        try:
            return sha256_file(self._blob_path(digest)) == digest
        except FileNotFoundError:
            return False

    def put_bytes(self, data: bytes) -> Digest:
        """Store ``data``; a no-op (beyond hashing) when the same bytes are already there."""
        digest = sha256_bytes(data)
        path = self._blob_path(digest)
        try:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                return digest
        except FileNotFoundError:
            pass
        with self.writer(expected=digest) as w:
            w.write(data)
        return digest

    def writer(self, expected: Digest | None = None) -> AbstractContextManager[BlobWriter]:
        """A BlobWriter whose blob is committed when the with-block exits without error.

        On an exception the temp file is removed and nothing becomes visible. With
        ``expected``, a different content digest raises DigestMismatch at commit.
        """
        return self._writer(expected)

    @contextmanager
    def _writer(self, expected: Digest | None) -> Iterator[BlobWriter]:
        tmp_path = self.tmp_dir / f"blob-{uuid.uuid4().hex}"
        with _disk_full_as_error("cannot create a blob", self.tmp_dir):
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        # The lock tells clean_tmp this file is alive; it lasts as long as the fd.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        writer = BlobWriter(fd, tmp_path)
        try:
            yield writer
            digest = writer._finish()
            if expected is not None:
                verify(expected, digest, "blob written to the store")
            self._commit(tmp_path, digest)
            writer._set_digest(digest)
        except BaseException:
            writer._abort()
            tmp_path.unlink(missing_ok=True)
            raise

    def _commit(self, tmp_path: Path, digest: Digest) -> None:
        # Ours was hashed as it was written; a blob already there may have gone bad
        # since, so ours replaces it. rename is atomic: a reader sees one or the other
        # whole, and one that opened the old file keeps reading it.
        os.rename(tmp_path, self._blob_path(digest))
        _fsync_dir(self._blob_dir)

    def open(self, digest: Digest) -> BinaryIO:
        """A reader of the blob that raises DigestMismatch at EOF if the content is corrupt.

        Callers that stop early get no verification; read to EOF to be sure.
        """
        try:
            raw = _VerifyingRaw(self._blob_path(digest), digest)
        except FileNotFoundError:
            raise _not_found(digest) from None
        return io.BufferedReader(raw, buffer_size=_CHUNK)

    def read_bytes(self, digest: Digest) -> bytes:
        """The whole blob, verified against its digest."""
        try:
            data = self._blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise _not_found(digest) from None
        verify(digest, sha256_bytes(data), f"blob {digest}", hint=CORRUPT_HINT)
        return data

    def remove(self, digest: Digest) -> None:
        """Delete the blob; a no-op when it is absent (another process may have removed it)."""
        self._blob_path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[Digest]:
        """Every stored blob's digest, in no particular order."""
        with os.scandir(self._blob_dir) as entries:
            names = [e.name for e in entries]
        for name in names:
            try:
                yield Digest("sha256", name)
            except InvalidDigest:
                continue  # not a blob (e.g. a stray file); leave it for a human to see

    def lock(self, name: str, *, timeout: float | None = None) -> AbstractContextManager[None]:
        """Exclusive lock ``<root>/locks/<name>``, shared by every process using this root.

        Blocks until free, or raises StoreLocked after ``timeout`` seconds if one is given.
        """
        if not name or "/" in name or name in (".", ".."):
            raise CacheError(f"invalid lock name {name!r}")
        return exclusive_lock(self._lock_dir / name, timeout=timeout)

    def temp_dir(self, prefix: str = "dir-") -> AbstractContextManager[Path]:
        """A new directory under ``tmp_dir``, locked against clean_tmp while in use.

        It is removed on exit unless the caller moved it away (renamed it into place).
        """
        return self._temp_dir(prefix)

    @contextmanager
    def _temp_dir(self, prefix: str) -> Iterator[Path]:
        path = self.tmp_dir / f"{prefix}{uuid.uuid4().hex}"
        with _disk_full_as_error("cannot make a temp dir", self.tmp_dir):
            path.mkdir(mode=0o700)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield path
        finally:
            try:
                force_rmtree(path)
            except OSError:
                pass  # unlocked below: the next command's clean_dead_tmp (or verify) retries
            finally:
                os.close(fd)

    def clean_tmp(self, *, grace: float = DEFAULT_TMP_GRACE) -> None:
        """Remove temp entries older than ``grace`` seconds that no live process holds.

        "Holds" means an flock on the entry, as ``writer`` and ``temp_dir`` take; make
        long-lived temp dirs with ``temp_dir`` so age alone never decides.
        """
        cutoff = time.time() - grace
        with os.scandir(self.tmp_dir) as it:
            entries = list(it)
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                remove_if_unlocked(Path(entry.path))
            except FileNotFoundError:
                continue  # its owner finished and removed or renamed it meanwhile
            except OSError:
                continue  # left for `pybuild cache verify --repair` to report and retry


def is_locked(path: Path) -> bool:
    """Whether a live process holds the flock of the temp entry ``path``."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_if_unlocked(path: Path) -> bool:
    """Remove a temp file or tree unless a live process holds its flock; True if removed."""
    if path.is_symlink():
        path.unlink()
        return True
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live process is still using it
        if path.is_dir():
            force_rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def force_rmtree(path: Path) -> None:
    """Remove a tree of any depth, even where directory modes forbid it (e.g. 0555 dirs
    from a layer); a no-op when it is gone. Raises OSError when it cannot."""
    remove_tree(path)


@contextmanager
def _disk_full_as_error(what: str, where: Path) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT into DiskFull (what to do), leaving other errors as they are."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(what, where) from None
        raise


def _not_found(digest: Digest) -> BlobNotFound:
    return BlobNotFound(
        f"blob {digest} is not in the store",
        hint="the store may have been pruned; rebuild or re-pull the image",
    )


def _fsync_dir(path: Path) -> None:
    """fsync a directory so a rename into it survives a crash."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
