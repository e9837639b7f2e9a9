"""A persistent stat cache: a file is read to fingerprint it only when its stat changed.

``<root>/fscache.db`` (SQLite, WAL) maps a path to the (device, inode, size, mtime_ns,
ctime_ns) it had when it was hashed, and the hash. A lookup whose stat matches all five
returns the stored hash without reading the file. Any write to a file changes its ctime,
so a match means the content is the one hashed, with one exception git also guards
against ("racy clean"): a file written again within the same timestamp tick as the
hashing. Entries are therefore stored only for files whose mtime and ctime are older
than the racy window when hashing starts; younger files are hashed every time. The
window is ``_RACY_S`` for whole-second timestamps (FAT, ext3, some NFS servers), and
``_RACY_FINE_S``, far above a kernel timestamp tick (one jiffy, at most 10 ms), when
both times have a sub-second part, which a coarse filesystem cannot show.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol

from cache.errors import CacheError
from cache.storeroot import touch_private

_RACY_S = 2.0
_RACY_FINE_S = 0.1
_NS = 1_000_000_000
_BUSY_TIMEOUT_S = 30.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    hash BLOB NOT NULL
)
"""

Stat = tuple[int, int, int, int, int]


class FileHasher(Protocol):
    """Content hash of a file; ``st``, when given, is an ``lstat`` of it taken earlier."""

    def __call__(self, path: Path, st: os.stat_result | None = None) -> bytes: ...


def stat_key(st: os.stat_result) -> Stat:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StatCache:
    """The stat cache of one store; usable from several threads and processes.

    New entries are written when ``flush`` or ``close`` is called (one transaction).
    A damaged or unreadable cache file only costs re-reading: errors opening it make
    the cache a pass-through, never a build failure.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Stat, bytes]] = {}
        # Rows read ahead, one query per directory instead of one per file.
        self._rows: dict[str, tuple[Stat, bytes]] = {}
        self._loaded: set[str] = set()  # directories whose rows are in _rows
        self.reads = 0  # files actually read (for tests and benchmarks)
        self.hits = 0
        try:
            touch_private(path)
            self._db: sqlite3.Connection | None = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(_SCHEMA)
        except (sqlite3.Error, OSError):
            self._db = None

    def __enter__(self) -> StatCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cached(self, read: Callable[[Path], bytes]) -> FileHasher:
        """Wrap a content hasher (``Path -> bytes``) so unchanged files are not re-read."""

        def hash_file(path: Path, st: os.stat_result | None = None) -> bytes:
            return self.hash_file(path, read, st)

        return hash_file

    def hash_file(
        self, path: Path, read: Callable[[Path], bytes], st: os.stat_result | None = None
    ) -> bytes:
        """``read(path)``, or the stored result when the file's stat is unchanged.

        ``st`` is an ``lstat`` of ``path`` the caller took before asking (a walk has
        one); without it the file is stat'ed here.
        """
        st = os.lstat(path) if st is None else st
        key = os.fsdecode(os.path.abspath(path))
        stat = stat_key(st)
        stored = self._get(key)
        if stored is not None and stored[0] == stat:
            self.hits += 1
            return stored[1]
        started = self._clock()  # a write after this instant must not hide behind the hash
        digest = read(path)
        self.reads += 1
        after = os.lstat(path)
        if stat_key(after) == stat and settled(after, started):
            with self._lock:
                self._pending[key] = (stat, digest)
        return digest

    def remember(self, path: Path, digest: bytes) -> None:
        """Record ``digest`` as the hash of ``path``, whose content the caller just wrote
        and hashed on the way. Only for files never written again in place (the store's
        content-addressed blobs: a new copy is a new inode, so its stat differs); the
        racy-window check of ``hash_file`` is for files that may be."""
        key = os.fsdecode(os.path.abspath(path))
        try:
            stat = stat_key(os.lstat(path))
        except OSError:
            return
        with self._lock:
            self._pending[key] = (stat, digest)

    def _get(self, key: str) -> tuple[Stat, bytes] | None:
        with self._lock:
            if key in self._pending:
                return self._pending[key]
            self._load_dir(os.path.dirname(key))
            return self._rows.get(key)

    def _load_dir(self, directory: str) -> None:
        """Read the rows of every path below ``directory`` once (caller holds the lock).

        A build hashes whole trees, so one range query per directory replaces one query
        per file; rows written by other processes later are simply not seen (a re-read).
        """
        if self._db is None or directory in self._loaded:
            return
        self._loaded.add(directory)
        prefix = directory.rstrip("/") + "/"
        # Every path starting with prefix sorts in [prefix, prefix with "/" -> "0").
        try:
            rows = self._db.execute(
                "SELECT path, dev, ino, size, mtime_ns, ctime_ns, hash FROM files"
                " WHERE path >= ? AND path < ?",
                (prefix, prefix[:-1] + "0"),
            ).fetchall()
        except sqlite3.Error:
            return
        for path, dev, ino, size, mtime, ctime, digest in rows:
            stat = (int(dev), int(ino), int(size), int(mtime), int(ctime))
            self._rows[str(path)] = (stat, bytes(digest))
        # Subdirectories are covered by this query too.
        self._loaded.update({os.path.dirname(str(row[0])) for row in rows})

    def flush(self) -> None:
        """Write new entries; a failure loses them (they are only a speed-up)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._rows.update(pending)
            if self._db is None or not pending:
                return
            rows = [(path, *stat, digest) for path, (stat, digest) in pending.items()]
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")

    def close(self) -> None:
        """Flush and close; idempotent."""
        self.flush()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def settled(st: os.stat_result, now: float) -> bool:
    """True when no write can still land in the tick the stat shows (see module doc)."""
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    fine = st.st_mtime_ns % _NS != 0 and st.st_ctime_ns % _NS != 0
    return now - newest / _NS > (_RACY_FINE_S if fine else _RACY_S)


def open_stat_cache(root: Path) -> StatCache:
    """The stat cache of the store at ``root``."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the store at {root}: {exc.strerror}") from None
    return StatCache(root / "fscache.db")
