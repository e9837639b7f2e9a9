"""Walking the build context below a directory, as BuildKit's copy of the context has it.

``.dockerignore`` (and COPY ``--exclude``) decide what a walk yields: an ignored
directory appears only as the parent of a re-included entry, and one that can only be
ignored is never read. ``builder.ops.context`` resolves sources and fingerprints walks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError
from builder.frontend.dockerignore import MatchState, PatternMatcher
from cache.keys import file_kind


@dataclass(frozen=True)
class ContextEntry:
    """One path of the context, from ``lstat`` (``path`` is where it is on disk)."""

    rel: str  # posix path relative to the context root; the root itself is never an entry
    path: Path
    kind: str  # "file" | "dir" | "symlink" | "other"
    mode: int  # permission bits incl. setuid/setgid/sticky (S_IMODE)
    size: int  # bytes of a file, length of a symlink's target, 0 otherwise
    link_target: str | None
    uid: int = 0
    gid: int = 0
    # The lstat the entry was made from, handed to the stat cache so it need not stat again.
    st: os.stat_result | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Cursor:
    """A directory during a walk: its real path, the name we report, and match states."""

    real: str
    shown: str
    path: Path
    ignore: MatchState
    ex_rel: str  # relative to the walked source, for COPY --exclude
    ex: MatchState | None


def make_entry(rel: str, path: Path, st: os.stat_result) -> ContextEntry:
    kind = file_kind(st.st_mode)
    link = os.readlink(path) if kind == "symlink" else None
    size = st.st_size if kind in ("file", "symlink") else 0
    mode = stat.S_IMODE(st.st_mode)
    return ContextEntry(rel, path, kind, mode, size, link, st.st_uid, st.st_gid, st)


def join_rel(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def list_names(path: Path) -> list[str]:
    """Names in a directory in byte order (Go's filepath.Walk order); [] if it vanished."""
    return [entry.name for entry in _list(path)]


def _list(path: Path) -> list[os.DirEntry[str]]:
    """``list_names`` with each name's directory entry (its type, without a stat)."""
    try:
        with os.scandir(path) as found:
            entries = list(found)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BuildError(
            f"cannot read directory {path} in the build context: {exc.strerror}",
            hint="check its permissions, or exclude it in .dockerignore",
        ) from None
    entries.sort(key=lambda entry: os.fsencode(entry.name))
    return entries


def _may_be_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return True  # let the lstat tell


@dataclass
class _Frame:
    """A dir being walked: its cursor, the names left, and its own entry while held back."""

    cur: Cursor
    names: Iterator[os.DirEntry[str]]
    held: ContextEntry | None = None


def _flush(stack: list[_Frame]) -> Iterator[ContextEntry]:
    """The held-back dir entries above what is about to be sent, outermost first."""
    for frame in stack:
        if frame.held is not None:
            yield frame.held
            frame.held = None


class Walker:
    """Depth-first walk below a directory, pruning what can only be ignored."""

    def __init__(self, ignore: PatternMatcher, excludes: PatternMatcher | None) -> None:
        self._ignore = ignore
        self._excludes = excludes

    def below(self, cur: Cursor) -> Iterator[ContextEntry]:
        """Entries below ``cur``, parents first; iterative, so any depth is walked."""
        stack = [_Frame(cur, iter(_list(cur.path)))]
        while stack:
            frame = stack[-1]
            child = next(frame.names, None)
            if child is None:
                stack.pop()
                continue
            path = frame.cur.path / child.name
            nxt = self._child(frame.cur, child.name, path)
            hidden = nxt.ignore.excluded or (nxt.ex is not None and nxt.ex.excluded)
            if hidden and not _may_be_dir(child):
                continue  # an ignored file is never sent: not even stat'ed
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # removed while we walk: it is not there to copy
                continue
            entry = make_entry(nxt.shown, path, st)
            if not hidden:
                yield from _flush(stack)
                yield entry
                if stat.S_ISDIR(st.st_mode):
                    stack.append(_Frame(nxt, iter(_list(nxt.path))))
            elif stat.S_ISDIR(st.st_mode) and not self._prunable(nxt):
                # Sent only as the parent of something re-included by a "!" pattern:
                # held back until (unless) something below it is sent.
                stack.append(_Frame(nxt, iter(_list(nxt.path)), entry))

    def _child(self, cur: Cursor, name: str, path: Path) -> Cursor:
        real, ex_rel = join_rel(cur.real, name), join_rel(cur.ex_rel, name)
        ignore = self._ignore.match_with_parent(real, cur.ignore)
        ex = None
        if self._excludes is not None:
            ex = self._excludes.match_with_parent(ex_rel, cur.ex)
        return Cursor(real, join_rel(cur.shown, name), path, ignore, ex_rel, ex)

    def _prunable(self, cur: Cursor) -> bool:
        if cur.ignore.excluded and self._ignore.excludes_dir_entirely(cur.real):
            return True
        ex, excludes = cur.ex, self._excludes
        return (
            ex is not None
            and excludes is not None
            and ex.excluded
            and (excludes.excludes_dir_entirely(cur.ex_rel))
        )
