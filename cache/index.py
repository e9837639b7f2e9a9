"""The store's index: cache keys to step records, image tags, per-step last inputs, and a
record of every build (its steps, hits, and the time the hits saved).

One SQLite file, ``<root>/index.db`` (``cache.indexdb``: schema, creation, connection);
many processes may use it at once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cache.digest import Digest
from cache.errors import CacheError, IndexDamaged, InvalidDigest, InvalidImage
from cache.indexdb import REPAIR_HINT, SCHEMA_VERSION, UPGRADES, connect, create, db_error, upgrade
from cache.oci import Descriptor, canonical_json
from cache.store import exclusive_lock
from cache.tagfile import read_tag, tag_file, tags_lock, write_tags


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
class Hit:
    """A build reused the record of ``key`` for the step ``step_id`` at ``used`` (unix
    time); ``inputs`` are the canonical JSON of the key's inputs (``last_inputs``)."""

    key: str
    step_id: str
    inputs: str
    used: float


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
                create(root, self.path)
            self._db: sqlite3.Connection | None = connect(self.path)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version in UPGRADES:
                version = upgrade(root, self._db)
        except sqlite3.Error as exc:
            raise db_error(self.path, exc) from None
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
                raise db_error(self.path, exc) from None

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

    def record_hits(self, hits: Sequence[Hit]) -> None:
        """For each hit, in one transaction: ``touch_step`` and ``set_last_inputs``.

        A build's cache hits, written once at the end of its solve instead of two write
        transactions per step. None: no transaction at all.
        """
        if not hits:
            return
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "UPDATE steps SET used = ? WHERE key = ?", [(h.used, h.key) for h in hits]
                )
                db.executemany(_SET_LAST_INPUTS, [(h.step_id, h.inputs) for h in hits])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

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
        """Point ``name`` at ``manifest``. A tag that already does, in the index and in
        tags.json, is left alone: a rebuild that changed nothing writes nothing."""
        if self.get_tag(name) == manifest and read_tag(self._root, name) == manifest:
            return
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
        with self._conn() as db:
            db.execute(_SET_LAST_INPUTS, (step_id, inputs))

    def close(self) -> None:
        """Close the connection; later calls raise CacheError. Idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


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
# An unchanged row is left alone: a no-change rebuild then writes no WAL pages for it.
_SET_LAST_INPUTS = (
    "INSERT INTO last_inputs VALUES (?, ?) ON CONFLICT (step_id) DO UPDATE"
    " SET inputs = excluded.inputs WHERE inputs != excluded.inputs"
)


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
