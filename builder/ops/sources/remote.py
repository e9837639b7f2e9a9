"""ADD's URL and git sources at solve time: their key pairs and the files they copy.

Keyed by what they hold, as BuildKit keys them: a URL by its ``--checksum`` or else by
the digest (and Last-Modified time) of a download made while keying, which the step
then reuses; a git source by the commit its ref resolves to, its subdir and
``--keep-git-dir``. What keying learnt is kept in a ``RemoteFetches``, one per step.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from builder.ops.sources import http
from builder.ops.sources.git import checkout, resolve_commit
from builder.plan.remote import GitRef, RemoteSource, redact
from fstree.tree import remove_tree

if TYPE_CHECKING:
    from builder.ops.copyfiles import SourceItem


class RemoteFetches:
    """What keying learnt (downloads, resolved commits), reused when the step runs.

    Per step, shared by its key and execute calls (which may run on several threads);
    downloads live in a private temp dir removed when this object goes away.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, http.Fetched] = {}
        self._commits: dict[str, str] = {}
        self._dirs: list[str] = []
        weakref.finalize(self, _remove_dirs, self._dirs)

    def download(self, src: RemoteSource, scratch: Path) -> http.Fetched:
        with self._lock:
            known = self._files.get(src.source)
            if known is not None and known.path.exists():
                return known
            folder = Path(tempfile.mkdtemp(prefix="remote-", dir=scratch))
            self._dirs.append(str(folder))
            # A file fetched again must be the one the key was made from.
            expected = known.digest if known is not None else src.checksum
            fetched = http.fetch(src.source, folder, expected)
            self._files[src.source] = fetched
            return fetched

    def commit(self, src: RemoteSource, git: GitRef) -> str:
        with self._lock:
            if src.source not in self._commits:
                self._commits[src.source] = resolve_commit(git)
            return self._commits[src.source]


def _remove_dirs(dirs: list[str]) -> None:
    for folder in dirs:
        remove_tree(folder, ignore_errors=True)


def key_pairs(
    sources: tuple[RemoteSource, ...], fetches: RemoteFetches, scratch: Path
) -> tuple[tuple[str, str], ...]:
    """(name, identity) per source; may download or ask a git remote (see module doc)."""
    pairs = []
    for src in sources:
        if src.git is not None:
            commit = fetches.commit(src, src.git)
            keep = "keep-git-dir" if src.keep_git_dir else "no-git-dir"
            value = f"{commit}:{src.git.subdir} {keep}"
            pairs.append((f"git:{redact(src.git.remote)}", value))
        elif src.checksum is not None:
            pairs.append((f"url:{redact(src.source)}", src.checksum))
        else:
            fetched = fetches.download(src, scratch)
            value = f"{fetched.digest} mtime={fetched.mtime}"
            pairs.append((f"url:{redact(src.source)}", value))
    return tuple(pairs)


def items(
    sources: tuple[RemoteSource, ...], fetches: RemoteFetches, scratch: Path
) -> list[SourceItem]:
    """The sources as copy items, staged under ``scratch``."""
    from builder.ops.copyfiles import SourceItem, walk_tree  # here: only an ADD that runs

    out = []
    for i, src in enumerate(sources):
        folder = scratch / f"remote-{i}"
        if src.git is not None:
            commit = fetches.commit(src, src.git)
            top = checkout(src.git, commit, folder, keep_git_dir=src.keep_git_dir)
            os.chmod(top, 0o755)
            out.append(SourceItem(name=top.name, path=top, entries=tuple(walk_tree(top))))
            continue
        fetched = fetches.download(src, scratch)
        folder.mkdir()
        path = folder / http.url_filename(src.source)
        shutil.copyfile(fetched.path, path)
        os.chmod(path, http.REMOTE_MODE)
        os.utime(path, (fetched.mtime, fetched.mtime))
        out.append(SourceItem(name=path.name, path=path, entries=(("", path),)))
    return out
