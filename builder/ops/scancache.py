"""COPY's context scans remembered in the store, so a no-change rebuild need not walk.

``<root>/scans/<key>.json`` keeps one scan (``BuildContext.scan``) per key: the context
root, the COPY's sources and ``--exclude`` patterns, the ``.dockerignore`` patterns and
the fingerprint format. It holds the scan's fingerprint and, per entry, what the walk
reported, the content hash, and the entry's stat (device, inode, size, mtime_ns,
ctime_ns). A later scan with the same key resolves each source again (symlinks and
``.dockerignore`` included) and re-stats every entry instead of walking: when all of
them, and the root when it is a source, have the same stat, the walk would list the same
names (adding, removing or renaming a name changes its directory's mtime and ctime) and
read the same content (the stat cache's argument, ``cache.fscache``), so the scan is
reused with the fresh stats. Any difference, or a missing or unreadable record, walks.

A scan is kept only when that argument holds: no ``!`` exception pattern (then a walk
reads only the directories it reports, never an excluded one), and every stat older than
the racy window when the walk started (``cache.fscache.settled``). Records are a speed-up:
written without fsync, the oldest dropped beyond ``KEEP``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from builder.errors import BuildError
from builder.frontend.dockerignore import PatternMatcher
from builder.ops.context import _FINGERPRINT_VERSION, BuildContext, ContextEntry, ContextScan
from cache.digest import Fingerprint
from cache.fscache import Stat, settled, stat_key

FORMAT = 1
KEEP = 32  # records kept per store; each is one COPY's sources in one context
_DIR = "scans"


class RememberingContext(BuildContext):
    """A ``BuildContext`` whose scans are remembered under ``store_root``."""

    def __init__(
        self,
        root: Path,
        store_root: Path,
        *,
        dockerfile: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(root, dockerfile=dockerfile)
        self._folder = store_root / _DIR
        self._clock = clock
        self._counting = threading.local()  # per thread: entries per walk of a scan
        self.reused = 0  # scans taken from a record (for tests and benchmarks)

    def scan(self, rels: Sequence[str], *, excludes: Sequence[str] = ()) -> ContextScan:
        if self.matcher.has_exclusions or PatternMatcher(excludes).has_exclusions:
            return super().scan(rels, excludes=excludes)
        path = self._folder / f"{self._key(rels, excludes)}.json"
        if (kept := self._reuse(path, rels)) is not None:
            self.reused += 1
            return kept
        started = self._clock()
        root = os.stat(self.root)
        counts: list[int] = []
        self._counting.counts = counts
        try:
            done = super().scan(rels, excludes=excludes)
        finally:
            self._counting.counts = None
        if len(counts) == len(rels) and sum(counts) == len(done.entries):
            self._keep(path, rels, root, done, counts, started)
        return done

    def walk(self, rel: str, *, excludes: Sequence[str] = ()) -> Iterator[ContextEntry]:
        counts: list[int] | None = getattr(self._counting, "counts", None)
        if counts is None:
            yield from super().walk(rel, excludes=excludes)
            return
        n = 0
        for entry in super().walk(rel, excludes=excludes):
            n += 1
            yield entry
        counts.append(n)

    def _key(self, rels: Sequence[str], excludes: Sequence[str]) -> str:
        doc = [FORMAT, _FINGERPRINT_VERSION.decode(), os.fsencode(self.root).hex()]
        doc += [list(rels), list(excludes), list(self.matcher.patterns)]
        fp = Fingerprint()
        fp.update(json.dumps(doc).encode())
        return fp.hexdigest()

    def _reuse(self, path: Path, rels: Sequence[str]) -> ContextScan | None:
        """The recorded scan with every entry's fresh stat, or None when anything moved."""
        try:
            doc = json.loads(path.read_bytes())
            if doc["rels"] != list(rels):
                return None
            if "" in rels and _stat(doc["root"]) != stat_key(os.stat(self.root)):
                return None
            entries: list[tuple[ContextEntry, bytes]] = []
            for rel, records in zip(rels, doc["entries"], strict=True):
                if not self._same_source(rel, records):
                    return None
                for record in records:
                    entry = _entry(self.root, record)
                    if entry is None:
                        return None
                    entries.append(entry)
            return ContextScan(str(doc["fingerprint"]), tuple(entries))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None  # missing, torn or from another format: walk

    def _same_source(self, rel: str, records: list[list[object]]) -> bool:
        """Whether ``rel`` still resolves (symlinks, .dockerignore) to the recorded path."""
        if not rel:
            return True  # the root itself: its stat was compared
        try:
            first = next(super().walk(rel), None)
        except BuildError:
            return False  # gone or now ignored: the walk reports it
        return (
            first is not None
            and bool(records)
            and os.fspath(first.path) == _path(self.root, records[0])
        )

    def _keep(
        self,
        path: Path,
        rels: Sequence[str],
        root: os.stat_result,
        done: ContextScan,
        counts: list[int],
        now: float,
    ) -> None:
        stats = [root, *(e.st for e, _ in done.entries)]
        if not all(st is not None and settled(st, now) for st in stats):
            return  # something changed too recently to trust its stat next time
        entries = iter(done.entries)
        per_rel = [[_record(self.root, *next(entries)) for _ in range(n)] for n in counts]
        doc = {
            "rels": list(rels),
            "root": list(stat_key(root)),
            "fingerprint": done.fingerprint,
            "entries": per_rel,
        }
        _write(self._folder, path, json.dumps(doc, separators=(",", ":")).encode())


def _record(root: Path, e: ContextEntry, content: bytes) -> list[object]:
    """An entry as JSON: its path is "" when it is ``root/rel`` (no symlink on the way)."""
    assert e.st is not None  # a walk's entries carry their lstat
    path = "" if e.path == root / e.rel else os.fspath(e.path)
    fields = [e.rel, path, e.kind, e.mode, e.size, e.link_target, e.uid, e.gid]
    return [*fields, content.hex(), list(stat_key(e.st))]


def _path(root: Path, record: list[object]) -> str:
    rel, path = _str(record[0]), _str(record[1])
    return path or f"{os.fspath(root)}/{rel}"


def _entry(root: Path, record: list[object]) -> tuple[ContextEntry, bytes] | None:
    """The recorded entry with a fresh lstat, or None when the stat differs (or the
    record is not one this module wrote)."""
    rel, path, kind, mode, size, link, uid, gid, content, stat = record
    if not (
        type(rel) is str and type(path) is str and type(kind) is str and type(content) is str
        and type(mode) is int and type(size) is int and type(uid) is int and type(gid) is int
        and (link is None or type(link) is str)
    ):  # fmt: skip
        return None
    where = path or f"{os.fspath(root)}/{rel}"
    try:
        st = os.lstat(where)
    except OSError:
        return None
    if [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns] != stat:
        return None
    entry = ContextEntry(rel, Path(where), kind, mode, size, link, uid, gid, st)
    return entry, bytes.fromhex(content)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _stat(value: object) -> Stat:
    if not isinstance(value, list) or len(value) != 5:
        raise TypeError(f"expected a stat, got {value!r}")
    dev, ino, size, mtime, ctime = (_int(v) for v in value)
    return (dev, ino, size, mtime, ctime)


def _write(folder: Path, path: Path, data: bytes) -> None:
    """Replace the record (temp file, rename; no fsync: it is only a speed-up) and drop
    the oldest records beyond KEEP. Failures are ignored: the next build walks."""
    tmp = folder / f".{uuid.uuid4().hex}.tmp"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        _drop_oldest(folder)
    except OSError:
        tmp.unlink(missing_ok=True)


def _drop_oldest(folder: Path) -> None:
    records = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".json"):
            try:
                records.append((entry.stat().st_mtime_ns, entry.path))
            except FileNotFoundError:
                continue
    for _, old in sorted(records)[: max(0, len(records) - KEEP)]:
        Path(old).unlink(missing_ok=True)
