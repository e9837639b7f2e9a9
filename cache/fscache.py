"""A persistent stat cache: a file is read to fingerprint it only when its stat changed.

``<root>/fscache.db`` (SQLite, WAL) maps a path to the (device, inode, size, mtime_ns,
ctime_ns) it had when it was hashed, and the hash. A lookup whose stat matches all five
returns the stored hash without reading the file. Any write to a file changes its ctime,
so a match means the content is the one hashed, with one exception git also guards
against ("racy clean"): a file written again within the same timestamp tick as the
hashing. Entries are therefore stored only for files whose mtime and ctime are older
than ``_RACY_S`` seconds at hashing time; younger files are hashed every time.
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

from cache.errors import CacheError

_RACY_S = 2.0
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


def _stat_key(st: os.stat_result) -> Stat:
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
        self.reads = 0  # files actually read (for tests and benchmarks)
        self.hits = 0
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error:
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

    def cached(self, read: Callable[[Path], bytes]) -> Callable[[Path], bytes]:
        """Wrap a content hasher (``Path -> bytes``) so unchanged files are not re-read."""

        def hash_file(path: Path) -> bytes:
            return self.hash_file(path, read)

        return hash_file

    def hash_file(self, path: Path, read: Callable[[Path], bytes]) -> bytes:
        """``read(path)``, or the stored result when the file's stat is unchanged."""
        st = os.lstat(path)
        key = os.fsdecode(os.path.abspath(path))
        stat = _stat_key(st)
        stored = self._get(key)
        if stored is not None and stored[0] == stat:
            self.hits += 1
            return stored[1]
        digest = read(path)
        self.reads += 1
        after = os.lstat(path)
        if _stat_key(after) == stat and _settled(after, self._clock()):
            with self._lock:
                self._pending[key] = (stat, digest)
        return digest

    def _get(self, key: str) -> tuple[Stat, bytes] | None:
        with self._lock:
            if key in self._pending:
                return self._pending[key]
            if self._db is None:
                return None
            try:
                row = self._db.execute(
                    "SELECT dev, ino, size, mtime_ns, ctime_ns, hash FROM files WHERE path = ?",
                    (key,),
                ).fetchone()
            except sqlite3.Error:
                return None
        if row is None:
            return None
        dev, ino, size, mtime, ctime, digest = row
        return (int(dev), int(ino), int(size), int(mtime), int(ctime)), bytes(digest)

    def flush(self) -> None:
        """Write new entries; a failure loses them (they are only a speed-up)."""
        with self._lock:
            pending, self._pending = self._pending, {}
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


def _settled(st: os.stat_result, now: float) -> bool:
    """True when no write can still land in the tick the stat shows (see module doc)."""
    newest = max(st.st_mtime_ns, st.st_ctime_ns) / 1e9
    return now - newest > _RACY_S


def open_stat_cache(root: Path) -> StatCache:
    """The stat cache of the store at ``root``."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the store at {root}: {exc.strerror}") from None
    return StatCache(root / "fscache.db")
