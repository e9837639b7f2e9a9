"""COPY's context scans remembered in the store, so a no-change rebuild need not walk.

``<root>/scans/<key>.json`` keeps one scan (``BuildContext.scan``) per key: the context
root, the COPY's sources and ``--exclude`` patterns, the ``.dockerignore`` patterns and
the fingerprint format. It holds the scan's fingerprint, its per-file records
(``ContextScan.records``, what a key keeps for miss explanations) and, per source, where
each entry the walk reported is on disk and its stat (device, inode, size, mtime_ns,
ctime_ns). A later scan with the same key resolves each source again (symlinks and
``.dockerignore`` included) and re-stats every entry instead of walking: when all of
them, and the root when it is a source, have the same stat, the walk would list the same
names (adding, removing or renaming a name changes its directory's mtime and ctime) and
read the same content (the stat cache's argument, ``cache.fscache``), so the scan is
reused: its fingerprint and records, without building an entry (a COPY that runs walks
again, ``BuildContext.take_walks``). When only files and symlinks moved (each the same
inode, no directory changed: the walk would list the same names in the same order), the
scan is made again from the recorded entries with their new stats, reading only the
files that moved (the others' content hashes are in the records): an edit of one file in
a big context reads one file, and the COPY that runs gets the walks. Any other
difference, or a missing or unreadable record, walks.

A scan is kept only when that argument holds: no ``!`` exception pattern (then a walk
reads only the directories it reports, never an excluded one), and every stat older than
the racy window when the walk started (``cache.fscache.settled``). Records are a speed-up:
written without fsync, the oldest dropped beyond ``KEEP``.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from builder.errors import BuildError
from builder.frontend.dockerignore import PatternMatcher
from builder.ops.context import (
    _FINGERPRINT_VERSION,
    BuildContext,
    ContextEntry,
    ContextScan,
    rooted,
)
from builder.ops.contextwalk import join_rel, make_entry
from cache.digest import Fingerprint
from cache.fscache import Stat, settled, stat_key

FORMAT = 2
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
        self.replayed = 0  # scans whose walks were taken from a record

    def scan(self, rels: Sequence[str], *, excludes: Sequence[str] = ()) -> ContextScan:
        if self.matcher.has_exclusions or PatternMatcher(excludes).has_exclusions:
            return super().scan(rels, excludes=excludes)
        path = self._folder / f"{self._key(rels, excludes)}.json"
        started = self._clock()
        recalled = self._recall(path, rels)
        if isinstance(recalled, ContextScan):
            self.reused += 1
            return recalled
        root = os.stat(self.root)
        if recalled is not None:
            self.replayed += 1
            walks, known = recalled
            done = self.scan_walks(rels, walks, known)
            counts = [len(walk) for walk in walks]
        else:
            counts = []
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

    def _recall(
        self, path: Path, rels: Sequence[str]
    ) -> ContextScan | tuple[list[tuple[ContextEntry, ...]], dict[str, bytes]] | None:
        """The recorded scan (fingerprint and records, no entries) when nothing it read
        moved. When only files and symlinks moved (no directory, so walks would list the
        same names in the same order): the walks again, from the record, and the content
        hash of each file that did not move (path -> hash). Else None."""
        try:
            doc = json.loads(path.read_bytes())
            if doc["rels"] != list(rels):
                return None
            if "" in rels and _stat(doc["root"]) != stat_key(os.stat(self.root)):
                return None
            moved: list[list[tuple[os.stat_result, bool]]] = []
            for rel, (wheres, stats) in zip(rels, doc["entries"], strict=True):
                if not self._same_source(rel, wheres):
                    return None
                found = _restat(wheres, stats)
                if found is None:
                    return None
                moved.append(found)
            files = tuple((_str(p), _str(r)) for p, r in doc["files"])
            if not any(changed for found in moved for _, changed in found):
                return ContextScan(_str(doc["fingerprint"]), (), files=files)
            records = dict(files)
            known: dict[str, bytes] = {}
            walks = [
                self._entries(rel, wheres, found, records, known)
                for rel, (wheres, _), found in zip(rels, doc["entries"], moved, strict=True)
            ]
            return walks, known
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None  # missing, torn or from another format: walk

    def _entries(
        self,
        rel: str,
        wheres: list[object],
        found: list[tuple[os.stat_result, bool]],
        records: Mapping[str, str],
        known: dict[str, bytes],
    ) -> tuple[ContextEntry, ...]:
        """The walk of source ``rel`` whose entries are at ``wheres`` (checked strings)
        with the stats ``found`` (and whether each moved). Adds to ``known`` the content hash
        of each file as recorded that did not move."""
        shown = rooted(rel)
        base = _str(wheres[0]) if shown else os.fspath(self.root)
        prefix = base if base.endswith("/") else base + "/"
        entries = []
        for i, where in enumerate(wheres):
            assert isinstance(where, str)
            st, changed = found[i]
            if shown and i == 0:
                name = shown
            elif where.startswith(prefix):
                name = join_rel(shown, where[len(prefix) :])
            else:
                raise ValueError(f"{where!r} is not below {base!r}")  # a torn record
            if not changed:
                record = records.get(name, "")
                if record.startswith("file|") and stat.S_ISREG(st.st_mode):
                    known[where] = bytes.fromhex(record.rpartition("|")[2])
            entries.append(make_entry(name, Path(where), st))
        return tuple(entries)

    def _same_source(self, rel: str, wheres: list[object]) -> bool:
        """Whether ``rel`` still resolves (symlinks, .dockerignore) to the recorded path."""
        if not rel:
            return True  # the root itself: its stat was compared
        try:
            first = next(super().walk(rel), None)
        except BuildError:
            return False  # gone or now ignored: the walk reports it
        return first is not None and bool(wheres) and os.fspath(first.path) == wheres[0]

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
        per_rel = []
        for n in counts:
            taken = [next(entries)[0] for _ in range(n)]
            numbers = [v for e in taken if e.st is not None for v in stat_key(e.st)]
            per_rel.append([[os.fspath(e.path) for e in taken], numbers])
        doc = {
            "rels": list(rels),
            "root": list(stat_key(root)),
            "fingerprint": done.fingerprint,
            "files": [list(pair) for pair in done.records()],
            "entries": per_rel,
        }
        _write(self._folder, path, json.dumps(doc, separators=(",", ":")).encode())


def _restat(wheres: list[object], stats: list[object]) -> list[tuple[os.stat_result, bool]] | None:
    """Per path in ``wheres``: its lstat, and whether it moved from the recorded stat
    (five numbers each, flat). None when any path is now another inode, or a directory
    moved (a name added, removed or renamed in it, or its metadata)."""
    if len(stats) != 5 * len(wheres):
        return None
    lstat = os.lstat
    found: list[tuple[os.stat_result, bool]] = []
    for i, where in enumerate(wheres):
        if type(where) is not str:
            return None  # a torn record (an int would be taken for a file descriptor)
        st = lstat(where)
        k = 5 * i
        if (
            st.st_mtime_ns == stats[k + 3]
            and st.st_ctime_ns == stats[k + 4]
            and st.st_ino == stats[k + 1]
            and st.st_size == stats[k + 2]
            and st.st_dev == stats[k]
        ):
            found.append((st, False))
        elif st.st_ino != stats[k + 1] or st.st_dev != stats[k] or stat.S_ISDIR(st.st_mode):
            return None
        else:
            found.append((st, True))  # the same file or symlink, changed: read again
    return found


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
