"""The store's index: cache keys to step records, image tags, per-step last inputs, and a
record of every build (its steps, hits, and the time the hits saved).

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
from cache.errors import CacheError, IndexDamaged, InvalidDigest, InvalidImage, disk_full_hint
from cache.oci import Descriptor, canonical_json
from cache.store import exclusive_lock
from cache.storeroot import touch_private
from cache.tagfile import tag_file, tags_lock, write_tags

REPAIR_HINT = (
    "run `pybuild cache verify --repair` to rebuild it: tags are kept (from tags.json), "
    "cached build steps are lost (the next builds run them again)"
)

SCHEMA_VERSION = 3
_BUSY_TIMEOUT_S = 60.0
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
_UPGRADES = {1: _SCHEMA_V2, 2: _SCHEMA_V3}


@dataclass(frozen=True)
class StepRecord:
    """The result of one cached step and the inputs its key was made from."""

    key: str
    layer: Descriptor | None  # None when the step made no filesystem change
    diff_id: Digest | None
    inputs: str  # canonical JSON of the KeyInputs (cache.keys)
    duration: float  # seconds the step took when it ran
    created: float  # unix time
    used: float | None = None  # unix time a build last reused it (None: never reused)


@dataclass(frozen=True)
class BuildStep:
    """One step of a recorded build."""

    step_id: str  # "<dockerfile>#<stage>#<position>"
    key: str | None
    cached: bool
    reason: str  # why it missed; "" on a hit
    duration: float  # seconds it took in this build
    layer_size: int  # bytes of its layer blob (0 when it made none)
    saved: float  # on a hit: the recorded duration of the run that made the record


@dataclass(frozen=True)
class BuildRecord:
    """One build: which Dockerfile, when, its filesystem steps, and (empty for builds
    recorded before schema 3) the image it made, its tags and its ``--label``s."""

    id: str
    dockerfile: str
    started: float
    finished: float
    steps: tuple[BuildStep, ...]
    image: str = ""  # the manifest digest
    image_id: str = ""  # the config digest
    tags: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def info_json(self) -> str:
        doc = {
            "image": self.image,
            "image_id": self.image_id,
            "tags": list(self.tags),
            "labels": dict(self.labels),
        }
        return canonical_json(doc).decode()

    @property
    def cached(self) -> int:
        return sum(1 for s in self.steps if s.cached)

    @property
    def time_saved(self) -> float:
        return sum(s.saved for s in self.steps if s.cached)

    @property
    def bytes_reused(self) -> int:
        return sum(s.layer_size for s in self.steps if s.cached)


class Index:
    """The index of the store at ``root``; one connection, usable from several threads."""

    def __init__(self, root: Path) -> None:
        self.path = root / "index.db"
        self._root = root
        self._lock = threading.Lock()
        try:
            if not self.path.exists():
                _create(root, self.path)
            self._db: sqlite3.Connection | None = _connect(self.path)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version in _UPGRADES:
                version = _upgrade(root, self._db)
        except sqlite3.Error as exc:
            raise _db_error(self.path, exc) from None
        except OSError as exc:
            raise CacheError(
                f"cannot create the index {self.path}: {exc.strerror}",
                hint="set PYBUILD_ROOT to a writable directory",
            ) from None
        if version == 0:  # made whole with a version, so emptied or replaced since
            self.close()
            raise IndexDamaged(f"the index {self.path} is empty or damaged", hint=REPAIR_HINT)
        if version != SCHEMA_VERSION:
            self.close()
            raise CacheError(
                f"{self.path} has schema version {version}, this pybuild reads {SCHEMA_VERSION}",
                hint="use the pybuild that made this store, or point PYBUILD_ROOT elsewhere",
            )
        if not tag_file(root).exists():
            self._sync_tags()  # a store made before tags.json: write it once

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
            row = db.execute(f"SELECT {_STEP_COLUMNS} FROM steps WHERE key = ?", (key,)).fetchone()
        return None if row is None else _step_from_row(row)

    def put_step(self, rec: StepRecord) -> None:
        """Insert the record, replacing any record with the same key."""
        layer = None if rec.layer is None else canonical_json(rec.layer.to_json()).decode()
        with self._conn() as db:
            db.execute(
                f"INSERT OR REPLACE INTO steps ({_STEP_COLUMNS}, layer_digest) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.key,
                    layer,
                    None if rec.diff_id is None else str(rec.diff_id),
                    rec.inputs,
                    rec.duration,
                    rec.created,
                    rec.used,
                    None if rec.layer is None else str(rec.layer.digest),
                ),
            )

    def touch_step(self, key: str, when: float) -> None:
        """Mark the record as used at ``when`` (a build reused it)."""
        with self._conn() as db:
            db.execute("UPDATE steps SET used = ? WHERE key = ?", (when, key))

    def remove_step(self, key: str) -> bool:
        """Forget a step record; True if there was one."""
        with self._conn() as db:
            return db.execute("DELETE FROM steps WHERE key = ?", (key,)).rowcount > 0

    def steps(self) -> list[StepRecord]:
        """Every step record, by key (for pruning and listing)."""
        with self._conn() as db:
            rows = db.execute(f"SELECT {_STEP_COLUMNS} FROM steps ORDER BY key").fetchall()
        return [_step_from_row(r) for r in rows]

    def record_build(self, build: BuildRecord) -> None:
        """Store a finished build and its steps, in one transaction."""
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT OR REPLACE INTO builds (id, dockerfile, started, finished, info) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (build.id, build.dockerfile, build.started, build.finished, build.info_json()),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO build_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_build_step_row(build.id, i, s) for i, s in enumerate(build.steps)],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def builds(self, since: float | None = None) -> list[BuildRecord]:
        """Recorded builds started at or after ``since`` (all when None), oldest first."""
        with self._conn() as db:
            heads = db.execute(
                "SELECT id, dockerfile, started, finished, info FROM builds WHERE started >= ? "
                "ORDER BY started, id",
                (since if since is not None else float("-inf"),),
            ).fetchall()
            rows = db.execute(
                "SELECT build_id, step_id, key, cached, reason, duration, layer_size, saved "
                "FROM build_steps ORDER BY build_id, position"
            ).fetchall()
        steps: dict[str, list[BuildStep]] = {}
        for build_id, *rest in rows:
            step_id, key, cached, reason, duration, size, saved = rest
            steps.setdefault(build_id, []).append(
                BuildStep(step_id, key, bool(cached), reason, duration, size, saved)
            )
        return [
            _build_from_row(bid, dockerfile, started, finished, info, tuple(steps.get(bid, ())))
            for bid, dockerfile, started, finished, info in heads
        ]

    def remove_builds(self, before: float) -> int:
        """Forget builds started before ``before``; returns how many."""
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "DELETE FROM build_steps WHERE build_id IN "
                    "(SELECT id FROM builds WHERE started < ?)",
                    (before,),
                )
                count = db.execute("DELETE FROM builds WHERE started < ?", (before,)).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return int(count)

    def set_tag(self, name: str, manifest: Digest) -> None:
        with self._conn() as db:
            db.execute("INSERT OR REPLACE INTO tags VALUES (?, ?)", (name, str(manifest)))
        self._sync_tags()

    def restore_tags(self, tags: list[tuple[str, Digest]]) -> None:
        """Set many tags in one transaction (rebuilding the index from tags.json)."""
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO tags VALUES (?, ?)", [(n, str(d)) for n, d in tags]
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self._sync_tags()

    def check_integrity(self) -> None:
        """Raise IndexDamaged unless SQLite's quick_check finds the database sound."""
        with self._conn() as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            detail = "; ".join(str(r[0]) for r in rows[:3])
            raise IndexDamaged(f"the index {self.path} is damaged: {detail}", hint=REPAIR_HINT)

    def _sync_tags(self) -> None:
        """Rewrite tags.json from the index (read inside its lock, so the last wins)."""
        with exclusive_lock(tags_lock(self._root)):
            write_tags(self._root, self.tags())

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
            removed = db.execute("DELETE FROM tags WHERE name = ?", (name,)).rowcount > 0
        self._sync_tags()
        return bool(removed)

    def last_inputs(self, step_id: str) -> str | None:
        """Inputs JSON of the last build of a Dockerfile step ("<abs path>#<stage>#<pos>")."""
        with self._conn() as db:
            row = db.execute(
                "SELECT inputs FROM last_inputs WHERE step_id = ?", (step_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_last_inputs(self, step_id: str, inputs: str) -> None:
        # An unchanged row is left alone: a no-change rebuild then writes no WAL pages.
        with self._conn() as db:
            db.execute(
                "INSERT INTO last_inputs VALUES (?, ?) ON CONFLICT (step_id) DO UPDATE"
                " SET inputs = excluded.inputs WHERE inputs != excluded.inputs",
                (step_id, inputs),
            )

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


def _build_from_row(
    bid: str,
    dockerfile: str,
    started: float,
    finished: float,
    info: str,
    steps: tuple[BuildStep, ...],
) -> BuildRecord:
    try:
        doc = json.loads(info)
        tags = tuple(str(t) for t in doc.get("tags", []))
        labels = tuple((str(k), str(v)) for k, v in dict(doc.get("labels", {})).items())
        image, image_id = str(doc.get("image", "")), str(doc.get("image_id", ""))
    except (ValueError, TypeError, AttributeError):
        tags, labels, image, image_id = (), (), "", ""  # torn by hand: the figures still count
    return BuildRecord(bid, dockerfile, started, finished, steps, image, image_id, tags, labels)


def _upgrade(root: Path, db: sqlite3.Connection) -> int:
    """Bring an older index to this version in place, once, under the index lock."""
    with exclusive_lock(root / "locks" / "index.db"):
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            while version in _UPGRADES:
                for statement in _UPGRADES[version].split(";"):
                    if statement.strip():
                        db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _create(root: Path, path: Path) -> None:
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


def _build_step_row(
    build_id: str, position: int, s: BuildStep
) -> tuple[str, int, str, str | None, int, str, float, int, float]:
    cached = int(s.cached)
    return (
        build_id,
        position,
        s.step_id,
        s.key,
        cached,
        s.reason,
        s.duration,
        s.layer_size,
        s.saved,
    )


_STEP_COLUMNS = "key, layer, diff_id, inputs, duration, created, used"


def _step_from_row(
    row: tuple[str, str | None, str | None, str, float, float, float | None],
) -> StepRecord:
    key, layer, diff_id, inputs, duration, created, used = row
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
        used=None if used is None else float(used),
    )


def _digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidDigest as exc:
        raise CacheError(f"index holds a malformed digest: {exc.message}") from None


def _no_space_left(directory: Path) -> bool:
    """Whether the file system holding ``directory`` has no free block or inode left."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail == 0 or st.f_favail == 0


def _db_error(path: Path, exc: sqlite3.Error) -> CacheError:
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
