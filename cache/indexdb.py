"""The index's SQLite file, ``<root>/index.db``: its schema and upgrades, how it is made
(whole, in a temp file renamed into place under a file lock, as pre-commit does), how a
connection is opened, and how SQLite errors read to a user.

WAL mode, so readers never wait for a writer; a busy timeout makes concurrent
processes wait instead of failing. ``cache.index`` is the API over it.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

from cache.errors import CacheError, IndexDamaged, disk_full_hint
from cache.store import exclusive_lock
from cache.storeroot import touch_private

REPAIR_HINT = (
    "run `pybuild cache verify --repair` to rebuild it: tags are kept (from tags.json), "
    "cached build steps are lost (the next builds run them again)"
)

SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 60.0
_SCHEMA_V1 = """
CREATE TABLE steps (
    key TEXT PRIMARY KEY,
    layer TEXT,
    layer_digest TEXT,
    diff_id TEXT,
    inputs TEXT NOT NULL,
    duration REAL NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX steps_layer_digest ON steps (layer_digest);
CREATE TABLE tags (name TEXT PRIMARY KEY, manifest TEXT NOT NULL);
CREATE TABLE last_inputs (step_id TEXT PRIMARY KEY, inputs TEXT NOT NULL);
"""
# Version 2: when each step record was last used (prune keeps recently used ones), and
# build records. A version 1 index is upgraded in place by running this.
_SCHEMA_V2 = """
ALTER TABLE steps ADD COLUMN used REAL;
CREATE TABLE builds (
    id TEXT PRIMARY KEY,
    dockerfile TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL NOT NULL
);
CREATE INDEX builds_started ON builds (started);
CREATE TABLE build_steps (
    build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    key TEXT,
    cached INTEGER NOT NULL,
    reason TEXT NOT NULL,
    duration REAL NOT NULL,
    layer_size INTEGER NOT NULL,
    saved REAL NOT NULL,
    PRIMARY KEY (build_id, position)
);
"""
# Version 3: what each build made and how it was labelled (JSON: image, image_id, tags,
# labels), for `cache history` and `cache stats --by label:KEY`.
_SCHEMA_V3 = """
ALTER TABLE builds ADD COLUMN info TEXT NOT NULL DEFAULT '{}';
"""
UPGRADES = {1: _SCHEMA_V2, 2: _SCHEMA_V3}


def connect(path: Path) -> sqlite3.Connection:
    # Autocommit (isolation_level=None): each statement is its own short transaction,
    # so no process holds the write lock between calls.
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    # WAL with synchronous=NORMAL cannot corrupt on power loss; it may lose the last
    # transactions, which for a cache means a rebuild.
    db.execute("PRAGMA synchronous = NORMAL")
    return db


def upgrade(root: Path, db: sqlite3.Connection) -> int:
    """Bring an older index to this version in place, once, under the index lock."""
    with exclusive_lock(root / "locks" / "index.db"):
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            while version in UPGRADES:
                for statement in UPGRADES[version].split(";"):
                    if statement.strip():
                        db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def create(root: Path, path: Path) -> None:
    """Make the database in a temp file and rename it into place, under a file lock."""
    with exclusive_lock(root / "locks" / "index.db"):
        if path.exists():
            return  # another process made it while we waited
        tmp = root / f".index-{uuid.uuid4().hex}.db"
        try:
            touch_private(tmp)  # it holds build args and step inputs: owner only
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript(_SCHEMA_V1 + _SCHEMA_V2 + _SCHEMA_V3)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                db.close()
            os.rename(tmp, path)
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                leftover.unlink(missing_ok=True)


def _no_space_left(directory: Path) -> bool:
    """Whether the file system holding ``directory`` has no free block or inode left."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail == 0 or st.f_favail == 0


def db_error(path: Path, exc: sqlite3.Error) -> CacheError:
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF  # extended codes keep it in the low byte
    # ENOSPC while SQLite writes its WAL or shm file comes back as SQLITE_IOERR
    # ("disk I/O error"), not SQLITE_FULL: look at the file system to tell them apart.
    io_error = primary == sqlite3.SQLITE_IOERR
    full = primary == sqlite3.SQLITE_FULL or "disk is full" in text
    if full or (io_error and _no_space_left(path.parent)):
        return CacheError(f"index {path}: {exc}", hint=disk_full_hint(path.parent))
    if io_error:
        return CacheError(
            f"index {path}: {exc}",
            hint="the file system under the store failed a read or write: check the disk "
            "(free space, kernel log), then run `pybuild cache verify`",
        )
    damaged = type(exc) is sqlite3.DatabaseError or any(
        word in text for word in ("malformed", "not a database", "no such table", "no such column")
    )
    if damaged:
        return IndexDamaged(f"the index {path} is damaged: {text}", hint=REPAIR_HINT)
    return CacheError(
        f"index {path}: {exc}", hint="another pybuild may be holding the store busy; retry"
    )
