"""The build context as BuildKit sees it: walking, COPY/ADD source lookup, fingerprints.

BuildKit copies the client's context minus ``.dockerignore``d paths (keeping the parent
directories of re-included files) and resolves COPY sources inside that copy. We read
the directory in place with the same view:

- a source is rooted: ``../x`` and ``/x`` both mean ``x`` at the context root, because
  BuildKit joins every source onto ``/`` (moby/buildkit#2131);
- symlinks met while resolving a source are followed *inside* the context root (an
  absolute target starts at the root, ``..`` stops there), so nothing outside is read;
- below a source directory, symlinks are entries of their own and are not followed.

Paths are posix strings relative to the root; ``""`` is the root itself.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError
from builder.frontend.dockerignore import (
    Glob,
    MatchState,
    PatternMatcher,
    clean_path,
    has_wildcards,
    read_ignore_file,
)
from builder.ops import contextwalk
from builder.ops.contextwalk import ContextEntry, Cursor, Walker, join_rel, list_names
from builder.ops.rootpath import resolve_beside
from cache.digest import Fingerprint
from cache.fscache import FileHasher
from cache.keys import Pairs, file_record

_MAX_LINKS = 255  # continuity's RootPath gives up after as many
_CHUNK = 1 << 20
_FINGERPRINT_VERSION = b"pybuild-context-fingerprint-v1"
_KEPT_SCANS = 8  # scans kept for ``take_scan``/``take_walks``; more when many keys interleave

__all__ = ["BuildContext", "ContextEntry", "ContextScan"]


@dataclass(frozen=True)
class ContextScan:
    """One walk of COPY sources: the fingerprint and every entry it covered.

    ``entries`` holds, per walked entry in walk order (repeats included when sources
    overlap), the entry and the xxh3-128 of its content (``b""`` unless a file). A scan
    remembered by ``builder.ops.scancache`` has no entries, only their ``files``.
    """

    fingerprint: str
    entries: tuple[tuple[ContextEntry, bytes], ...]
    # Per source, in order: what ``walk`` yielded for it (the COPY that runs copies it);
    # empty when the scan was not walked (a remembered one, builder.ops.scancache).
    walks: tuple[tuple[ContextEntry, ...], ...] = field(default=(), compare=False, repr=False)
    # The per-file records (``records()``) when there are no entries to derive them from.
    files: Pairs | None = field(default=None, compare=False, repr=False)

    def records(self) -> Pairs:
        """(path, ``cache.keys.file_record``) of every entry, first one per path, sorted
        by path: what ``KeyInputs.files`` keeps for miss explanations."""
        if self.files is not None:
            return self.files
        records: dict[str, str] = {}
        for e, content in self.entries:
            if e.rel not in records:
                link = e.link_target or ""
                records[e.rel] = file_record(e.kind, e.mode, e.uid, e.gid, link, content.hex())
        return tuple(sorted(records.items()))


ScanKey = tuple[tuple[str, ...], tuple[str, ...]]


class _Kept:
    """Scans kept for one later taker each; past ``_KEPT_SCANS`` the oldest is dropped."""

    def __init__(self) -> None:
        self._scans: dict[ScanKey, ContextScan] = {}

    def put(self, key: ScanKey, scan: ContextScan) -> None:
        self._scans.pop(key, None)
        while len(self._scans) >= _KEPT_SCANS:
            del self._scans[next(iter(self._scans))]  # the oldest
        self._scans[key] = scan

    def take(self, key: ScanKey) -> ContextScan | None:
        return self._scans.pop(key, None)


@dataclass(frozen=True)
class _Found:
    rel: str  # where the path really is, symlinks resolved
    path: Path
    st: os.stat_result


def rooted(source: str) -> str:
    """A source as a context-relative path: joined onto ``/`` and cleaned, as BuildKit does."""
    return clean_path("/" + source).lstrip("/")


def _read_file(path: Path, st: os.stat_result | None = None) -> bytes:
    """``_hash_file`` as a ``FileHasher``; a plain read has no use for ``st``."""
    return _hash_file(path)


def _hash_file(path: Path) -> bytes:
    """xxh3-128 of a regular file's content, read in chunks (the one place content is read)."""
    # O_NOFOLLOW: the walk saw a regular file; never read through a symlink swapped in since.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fp = Fingerprint()
        while chunk := os.read(fd, _CHUNK):
            fp.update(chunk)
    finally:
        os.close(fd)
    return bytes.fromhex(fp.hexdigest())


def _record(*fields: bytes) -> bytes:
    # Length-prefixed, so that no two different records share an encoding.
    return b"".join(len(field).to_bytes(8, "big") + field for field in fields)


def _num(n: int) -> bytes:
    return str(n).encode()


def _find_ignore_file(root: Path, dockerfile: Path) -> Path | None:
    # BuildKit: "<Dockerfile name>.dockerignore" beside the Dockerfile replaces .dockerignore.
    # Each is read as BuildKit reads it, links followed only inside its own directory.
    for candidate in (
        dockerfile.parent / f"{dockerfile.name}.dockerignore",
        root / ".dockerignore",
    ):
        found = resolve_beside(candidate)
        if found.is_file():
            return found
    return None


class BuildContext:
    """A build context directory with its ``.dockerignore`` applied.

    Raises BuildError if ``root`` is not a directory or the ignore file is invalid. The
    ignore file is ``<dockerfile>.dockerignore`` beside the Dockerfile when that exists,
    else ``<root>/.dockerignore``; ``dockerfile`` defaults to ``<root>/Dockerfile``.
    """

    def __init__(self, root: Path, *, dockerfile: Path | None = None) -> None:
        if not root.is_dir():
            raise BuildError(
                f"build context {root} is not a directory",
                hint="pass a directory as the build context, e.g. `pybuild -t app:1 .`",
            )
        self.root = Path(os.path.realpath(root))
        dockerfile = dockerfile if dockerfile is not None else self.root / "Dockerfile"
        self.ignore_file = _find_ignore_file(self.root, dockerfile)
        patterns: list[str] = []
        try:
            if self.ignore_file is not None:
                raw = self.ignore_file.read_bytes()
                patterns = read_ignore_file(raw.decode("utf-8", "surrogateescape"))
            self.matcher = PatternMatcher(patterns)
            self.matcher.validate()
        except OSError as exc:
            raise BuildError(f"cannot read {self.ignore_file}: {exc.strerror}") from None
        except BuildError as exc:
            raise BuildError(exc.message, file=str(self.ignore_file), hint=exc.hint) from None
        self._no_hits = MatchState(False, (False,) * len(self.matcher.patterns))
        # The seam for a stat cache (cache.fscache): path -> xxh3-128 of its content.
        self.hash_file: FileHasher = _read_file
        # Scans made by ``fingerprint``, so the per-file records of the same COPY key
        # (builder.ops.filekeys) and the COPY itself (builder.ops.copy) reuse that walk
        # instead of walking the context again: each taker gets it once.
        self._scans = _Kept()
        self._walks = _Kept()
        self._scans_lock = threading.Lock()

    def is_ignored(self, rel: str) -> bool:
        """True when ``.dockerignore`` excludes ``rel`` (a directory may still be sent as
        the parent of a re-included file; ``walk`` and ``resolve_sources`` handle that)."""
        return self.matcher.matches(rooted(rel))

    def resolve_sources(self, source: str, *, excludes: Sequence[str] = ()) -> list[str]:
        """The context paths a COPY/ADD ``source`` (already expanded) names, in walk order.

        Without wildcards: ``[source]`` rooted and cleaned (``"."`` gives ``[""]``, the
        root), once it is known to exist and not be ignored. With wildcards (Go
        filepath.Match per path segment): every visible match, with symlinks in the part
        before the first wildcard resolved. ``excludes`` (COPY --exclude patterns) drop
        wildcard matches by their path below that part; a wildcard that matches nothing
        gives ``[]`` (BuildKit's COPY sets AllowEmptyWildcard). Raises BuildError, naming
        the source, when a path without wildcards is missing.
        """
        rel = rooted(source)
        parts = rel.split("/") if rel else []
        first = next((i for i, part in enumerate(parts) if has_wildcards(part)), None)
        if first is None:
            self._resolve(rel, source)
            return [rel]
        base = self._resolve("/".join(parts[:first]), source)
        globs = [Glob(part) for part in parts[first:]]
        found = self._glob(base.rel, base.path, globs) if stat.S_ISDIR(base.st.st_mode) else []
        if excludes:
            ex = PatternMatcher(excludes)
            ex.validate()
            found = [m for m in found if not ex.matches(m[len(base.rel) :].lstrip("/"))]
        return found  # a wildcard matching nothing is no error (BuildKit AllowEmptyWildcard)

    def _glob(self, rel: str, path: Path, globs: Sequence[Glob]) -> list[str]:
        found: list[str] = []
        for name in list_names(path):
            if not globs[0].matches(name):
                continue
            child_rel, child = join_rel(rel, name), path / name
            try:
                st = os.lstat(child)
            except FileNotFoundError:
                continue
            if not self._visible(child_rel, child, st):
                continue
            if len(globs) == 1:
                found.append(child_rel)
            elif stat.S_ISDIR(st.st_mode):  # like filepath.Walk, never into a symlink
                found.extend(self._glob(child_rel, child, globs[1:]))
        return found

    def walk(self, rel: str, *, excludes: Sequence[str] = ()) -> Iterator[ContextEntry]:
        """The entry at ``rel`` and, for a directory, every visible entry below it.

        Order: depth first, names in byte order, each directory before its contents. The
        entry at ``rel`` is itself followed if it is a symlink (as COPY does) and is not
        yielded for the root ``""``; entries below it are reported as ``rel/...``, with
        ``path`` on disk. An ignored directory appears only as the parent of a re-included
        entry; one that ``.dockerignore`` excludes entirely is never read. ``excludes``
        (COPY --exclude) match paths relative to ``rel``. Raises BuildError if ``rel`` is
        missing or ignored.
        """
        shown = rooted(rel)
        found = self._resolve(shown, rel)
        if shown:
            yield contextwalk.make_entry(shown, found.path, found.st)
        if not stat.S_ISDIR(found.st.st_mode):
            return
        ex = None
        if excludes:
            ex = PatternMatcher(excludes)
            ex.validate()
        ignore = self.matcher.match_with_parent(found.rel, None) if found.rel else self._no_hits
        ex_state = MatchState(False, (False,) * len(ex.patterns)) if ex else None
        top = Cursor(found.rel, shown, found.path, ignore, "", ex_state)
        yield from Walker(self.matcher, ex).below(top)

    def fingerprint(self, rels: Sequence[str], *, excludes: Sequence[str] = ()) -> str:
        """xxh3-128 hex of what copying ``rels`` (in this order) would read.

        For each entry of ``walk(rel, excludes=excludes)``: its path, kind, mode, uid, gid,
        symlink target, and a file's size and content; never times. Deterministic. Each
        file is read once per call. The walk is kept for one ``take_scan`` of the same
        arguments, and for one ``take_walks``.
        """
        done = self.scan(rels, excludes=excludes)
        key = (tuple(rels), tuple(excludes))
        with self._scans_lock:
            self._scans.put(key, done)
            self._walks.put(key, done)
        return done.fingerprint

    def take_scan(self, rels: Sequence[str], *, excludes: Sequence[str] = ()) -> ContextScan:
        """The scan the last ``fingerprint`` of these arguments made (handed out once),
        else a new one: per-file records then describe exactly what the key hashed."""
        with self._scans_lock:
            kept = self._scans.take((tuple(rels), tuple(excludes)))
        return kept if kept is not None else self.scan(rels, excludes=excludes)

    def take_walks(
        self, rels: Sequence[str], *, excludes: Sequence[str] = ()
    ) -> list[tuple[ContextEntry, ...]]:
        """``walk(rel, excludes=excludes)`` of each of ``rels``: the walks the last
        ``fingerprint`` of these arguments made (handed out once), else new ones. A COPY
        then copies exactly the entries its key covered, without walking again."""
        with self._scans_lock:
            kept = self._walks.take((tuple(rels), tuple(excludes)))
        if kept is not None and len(kept.walks) == len(rels):  # a scan may come without
            return list(kept.walks)
        return [tuple(self.walk(rel, excludes=excludes)) for rel in rels]

    def scan(self, rels: Sequence[str], *, excludes: Sequence[str] = ()) -> ContextScan:
        """Walk ``rels`` once: the ``fingerprint`` and every entry with its content hash.

        Raises BuildError when a source is missing or a file cannot be read.
        """
        return self.scan_walks(rels, (tuple(self.walk(rel, excludes=excludes)) for rel in rels))

    def scan_walks(
        self,
        rels: Sequence[str],
        walks: Iterable[tuple[ContextEntry, ...]],
        known: Mapping[str, bytes] | None = None,
    ) -> ContextScan:
        """``scan`` of ``rels`` whose walks (one per source, in order) are ``walks``:
        the fingerprint hashes the entries and reads every file's content, except the
        files in ``known`` (path on disk -> content hash, which the caller vouches for)."""
        fp = Fingerprint()
        fp.update(_FINGERPRINT_VERSION)
        digests: dict[str, bytes] = dict(known) if known else {}
        entries: list[tuple[ContextEntry, bytes]] = []
        done: list[tuple[ContextEntry, ...]] = []
        for rel, walk in zip(rels, walks, strict=True):
            fp.update(_record(b"source", os.fsencode(rel)))
            done.append(walk)
            for e in walk:
                fields = [b"entry", os.fsencode(e.rel), e.kind.encode(), _num(e.mode)]
                fields += [_num(e.uid), _num(e.gid), os.fsencode(e.link_target or "")]
                content = b""
                if e.kind == "file":
                    key = os.fspath(e.path)
                    if key not in digests:
                        digests[key] = self._read(e)
                    content = digests[key]
                    fields += [_num(e.size), content]
                elif e.kind == "other":  # fifo, socket or device: which, and which device
                    st = os.lstat(e.path)
                    fields += [_num(stat.S_IFMT(st.st_mode)), _num(st.st_rdev)]
                fp.update(_record(*fields))
                entries.append((e, content))
        return ContextScan(fp.hexdigest(), tuple(entries), tuple(done))

    def _read(self, entry: ContextEntry) -> bytes:
        try:
            return self.hash_file(entry.path, entry.st)
        except OSError as exc:
            raise BuildError(
                f"cannot read {entry.rel} from the build context: {exc.strerror}",
                hint="check its permissions, or exclude it in .dockerignore",
            ) from None

    def _visible(self, rel: str, path: Path, st: os.stat_result) -> bool:
        """Whether BuildKit's copy of the context has ``rel``: not ignored, or a directory
        holding something that is not."""
        state = self.matcher.match_with_parent(rel, None)
        if not state.excluded:
            return True
        if not stat.S_ISDIR(st.st_mode) or self.matcher.excludes_dir_entirely(rel):
            return False
        below = Walker(self.matcher, None).below(Cursor(rel, rel, path, state, "", None))
        return next(below, None) is not None

    def _resolve(self, rel: str, source: str) -> _Found:
        """Follow ``rel`` through symlinks inside the root; BuildError if it is not there."""
        todo = [part for part in reversed(rel.split("/")) if part]
        done: list[str] = []
        links, outside = 0, ""
        while todo:
            part = todo.pop()
            if part in (".", ".."):
                if part == ".." and done:
                    done.pop()
                continue
            cand = join_rel("/".join(done), part)
            path = self.root / cand
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                raise self._not_found(source, cand, outside) from None
            if not self._visible(cand, path, st):
                raise self._not_found(source, cand, outside)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise BuildError(f"{source}: too many levels of symbolic links")
                target = os.readlink(path)
                if target.startswith("/") or _climbs_out(cand, target):
                    outside = outside or f"{cand!r} is a symlink to {target!r}"
                done = [] if target.startswith("/") else done
                todo.extend(part for part in reversed(target.split("/")) if part)
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                raise self._not_found(source, cand, outside)
            done.append(part)
        found = "/".join(done)
        # Re-stat: the last lstat may have been of a link whose target was "..".
        path = self.root / found if found else self.root
        return _Found(found, path, os.lstat(path) if found else os.stat(path))

    def _not_found(
        self, source: str, rel: str = "", outside: str = "", hint: str = ""
    ) -> BuildError:
        if outside:
            hint = (
                f"{outside}, which points outside the build context; symlinks are "
                "followed inside the context root, so only files in the context can be copied"
            )
        elif rel and os.path.lexists(self.root / rel) and self.matcher.matches(rel):
            name = self.ignore_file.name if self.ignore_file else ".dockerignore"
            hint = f"{rel!r} is excluded by {name}; add '!{rel}' to it to send it"
        hint = hint or (
            f"sources are looked up in the build context ({self.root}), not beside the "
            "Dockerfile; check the path and the context directory"
        )
        return BuildError(
            "file not found in build context or excluded by .dockerignore: "
            f"stat {source}: file does not exist",
            hint=hint,
        )


def _climbs_out(link_rel: str, target: str) -> bool:
    """True when a relative link target goes above the context root."""
    depth = link_rel.count("/")  # directories between the root and the link
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False
