"""The store's index: cache keys to step records, image tags, and per-step last inputs.

One SQLite file, ``<root>/index.db``, in WAL mode so readers never wait for a writer.
It is created whole (schema and all) in a temp file and renamed into place behind a
file lock, as pre-commit does, so a process never sees a half-made database. Many
processes may use it at once: a busy timeout makes them wait instead of failing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cache.digest import Digest
from cache.errors import CacheError, InvalidDigest, InvalidImage
from cache.oci import Descriptor, canonical_json
from cache.store import exclusive_lock

SCHEMA_VERSION = 1
_BUSY_TIMEOUT_S = 60.0
_SCHEMA = """
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


@dataclass(frozen=True)
class StepRecord:
    """The result of one cached step and the inputs its key was made from."""

    key: str
    layer: Descriptor | None  # None when the step made no filesystem change
    diff_id: Digest | None
    inputs: str  # canonical JSON of the KeyInputs (cache.keys)
    duration: float  # seconds the step took when it ran
    created: float  # unix time


class Index:
    """The index of the store at ``root``; one connection, usable from several threads."""

    def __init__(self, root: Path) -> None:
        self.path = root / "index.db"
        self._lock = threading.Lock()
        try:
            if not self.path.exists():
                _create(root, self.path)
            self._db: sqlite3.Connection | None = _connect(self.path)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise _db_error(self.path, exc) from None
        except OSError as exc:
            raise CacheError(
                f"cannot create the index {self.path}: {exc.strerror}",
                hint="set PYBUILD_ROOT to a writable directory",
            ) from None
        if version != SCHEMA_VERSION:
            self.close()
            raise CacheError(
                f"{self.path} has schema version {version}, this pybuild reads {SCHEMA_VERSION}",
                hint="use the pybuild that made this store, or point PYBUILD_ROOT elsewhere",
            )

    def __enter__(self) -> Index:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """The connection, held by this thread; sqlite errors become CacheError."""
        with self._lock:
            if self._db is None:
                raise CacheError(f"index {self.path} is closed")
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise _db_error(self.path, exc) from None

    def get_step(self, key: str) -> StepRecord | None:
        with self._conn() as db:
            row = db.execute(
                "SELECT key, layer, diff_id, inputs, duration, created FROM steps WHERE key = ?",
                (key,),
            ).fetchone()
        return None if row is None else _step_from_row(row)

    def put_step(self, rec: StepRecord) -> None:
        """Insert the record, replacing any record with the same key."""
        layer = None if rec.layer is None else canonical_json(rec.layer.to_json()).decode()
        with self._conn() as db:
            db.execute(
                "INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.key,
                    layer,
                    None if rec.layer is None else str(rec.layer.digest),
                    None if rec.diff_id is None else str(rec.diff_id),
                    rec.inputs,
                    rec.duration,
                    rec.created,
                ),
            )

    def remove_step(self, key: str) -> bool:
        """Forget a step record; True if there was one."""
        with self._conn() as db:
            return db.execute("DELETE FROM steps WHERE key = ?", (key,)).rowcount > 0

    def steps(self) -> list[StepRecord]:
        """Every step record, by key (for pruning and listing)."""
        with self._conn() as db:
            rows = db.execute(
                "SELECT key, layer, diff_id, inputs, duration, created FROM steps ORDER BY key"
            ).fetchall()
        return [_step_from_row(r) for r in rows]

    def set_tag(self, name: str, manifest: Digest) -> None:
        with self._conn() as db:
            db.execute("INSERT OR REPLACE INTO tags VALUES (?, ?)", (name, str(manifest)))

    def get_tag(self, name: str) -> Digest | None:
        with self._conn() as db:
            row = db.execute("SELECT manifest FROM tags WHERE name = ?", (name,)).fetchone()
        return None if row is None else _digest(row[0])

    def tags(self) -> list[tuple[str, Digest]]:
        """All tags and their manifest digests, sorted by name."""
        with self._conn() as db:
            rows = db.execute("SELECT name, manifest FROM tags ORDER BY name").fetchall()
        return [(str(name), _digest(manifest)) for name, manifest in rows]

    def remove_tag(self, name: str) -> bool:
        """Delete a tag; True if it existed."""
        with self._conn() as db:
            return db.execute("DELETE FROM tags WHERE name = ?", (name,)).rowcount > 0

    def last_inputs(self, step_id: str) -> str | None:
        """Inputs JSON of the last build of a Dockerfile step ("<abs path>#<stage>#<pos>")."""
        with self._conn() as db:
            row = db.execute(
                "SELECT inputs FROM last_inputs WHERE step_id = ?", (step_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_last_inputs(self, step_id: str, inputs: str) -> None:
        with self._conn() as db:
            db.execute("INSERT OR REPLACE INTO last_inputs VALUES (?, ?)", (step_id, inputs))

    def close(self) -> None:
        """Close the connection; later calls raise CacheError. Idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit (isolation_level=None): each statement is its own short transaction,
    # so no process holds the write lock between calls.
    db = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
    # WAL with synchronous=NORMAL cannot corrupt on power loss; it may lose the last
    # transactions, which for a cache means a rebuild.
    db.execute("PRAGMA synchronous = NORMAL")
    return db


def _create(root: Path, path: Path) -> None:
    """Make the database in a temp file and rename it into place, under a file lock."""
    with exclusive_lock(root / "locks" / "index.db"):
        if path.exists():
            return  # another process made it while we waited
        tmp = root / f".index-{uuid.uuid4().hex}.db"
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                db.close()
            os.rename(tmp, path)
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                leftover.unlink(missing_ok=True)


def _step_from_row(row: tuple[str, str | None, str | None, str, float, float]) -> StepRecord:
    key, layer, diff_id, inputs, duration, created = row
    try:
        descriptor = None if layer is None else Descriptor.from_json(json.loads(layer))
    except (ValueError, InvalidImage) as exc:
        raise CacheError(f"index: step {key} has a malformed layer record: {exc}") from None
    return StepRecord(
        key=key,
        layer=descriptor,
        diff_id=None if diff_id is None else _digest(diff_id),
        inputs=inputs,
        duration=float(duration),
        created=float(created),
    )


def _digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidDigest as exc:
        raise CacheError(f"index holds a malformed digest: {exc.message}") from None


def _db_error(path: Path, exc: sqlite3.Error) -> CacheError:
    hint = "another pybuild may be holding the store busy; retry"
    if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
        hint = f"the index is damaged; remove {path} to start a fresh cache"
    return CacheError(f"index {path}: {exc}", hint=hint)
