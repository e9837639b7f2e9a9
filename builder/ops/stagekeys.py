"""What ``COPY --from=<stage>`` and ``RUN --mount=from=<stage>`` add to a step's key.

The content of the paths the step uses, never the whole stage and never its history:
as BuildKit's content-based cache keys for the inputs of an op (solver/llbsolver/ops/
exec.go CacheMap and file.go: ``ComputeDigestFunc`` = ``NewContentHashFunc`` over the
selectors; cache/contenthash hashes type, mode, owner, link target and content, not
times). A stage rebuilt with identical content, or one whose other paths changed, keys
the same; a changed file is named in ``KeyInputs.files`` so a miss says which.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import BuildError
from builder.plan.paths import clean
from cache.digest import sha256_bytes
from cache.fscache import FileHasher
from cache.keys import Pairs, file_kind, file_record

if TYPE_CHECKING:
    from builder.ops.stagetree import StageNode, StageTree

_VERSION = "pybuild-stage-content-v1"


@dataclass(frozen=True)
class StageContent:
    """``fingerprint`` covers every record in walk order (and what was missing);
    ``files`` are the records by the name a miss reason shows."""

    fingerprint: str
    files: Pairs


def _record(node: StageNode, hash_file: FileHasher) -> str:
    kind = file_kind(node.st.st_mode)
    link = os.readlink(node.path) if kind == "symlink" else ""
    if kind == "file":
        try:
            content = hash_file(node.path, node.st).hex()
        except OSError as exc:
            raise BuildError(f"cannot read {node.path} in the store: {exc.strerror}") from None
    elif kind == "other":  # fifo, socket or device: which, and which device
        content = f"{stat.S_IFMT(node.st.st_mode):o}:{node.st.st_rdev}"
    else:
        content = ""
    uid, gid = node.owner()
    return file_record(kind, stat.S_IMODE(node.st.st_mode), uid, gid, link, content)


class _Collector:
    def __init__(self, tree: StageTree, hash_file: FileHasher) -> None:
        self.tree = tree
        self.hash_file = hash_file
        self.walked: list[list[str]] = []
        self.files: dict[str, str] = {}

    def add(self, node: StageNode | None, wanted: str, shown: str) -> None:
        """Everything at and below ``node`` (found for ``wanted``), named below ``shown``."""
        if node is None:
            self.walked.append(["missing", wanted])
            return
        self.walked.append(["source", wanted, node.rel])
        for entry in self.tree.walk(node):
            below = entry.rel[len(node.rel) :].lstrip("/") if node.rel else entry.rel
            name = posixpath.join(shown, below) if below else shown
            # The root's own metadata is that of the top layer's store dir, not content.
            record = _record(entry, self.hash_file) if entry.rel else "dir||||"
            self.walked.append([below, record])
            self.files.setdefault(name, record)

    def result(self) -> StageContent:
        text = json.dumps([_VERSION, self.walked], separators=(",", ":"))
        digest = sha256_bytes(text.encode("utf-8", "surrogateescape")).hex
        return StageContent(digest, tuple(sorted(self.files.items())))


def copy_content(
    lowers: Sequence[Path], sources: Sequence[str], hash_file: FileHasher
) -> StageContent:
    """What ``COPY --from`` of ``sources`` reads from the stage of ``lowers``: each source
    (links resolved inside the stage) and all below it, named by its path in the stage.
    A wildcard in the last part keys its matches; one higher up keys everything below
    the directory before it (more than is copied: never a stale hit). A missing source
    keys as missing (the copy itself fails). Raises BuildError if the store is unreadable.
    """
    from builder.ops.stagetree import StageTree  # here: only --from steps read layers

    tree = StageTree(lowers)
    out = _Collector(tree, hash_file)
    try:
        for source in sources:
            _add_source(tree, out, clean(source))
    except OSError as exc:
        raise _unreadable(exc) from None
    return out.result()


def _add_source(tree: StageTree, out: _Collector, path: str) -> None:
    parts = path.split("/")
    wild = [i for i, part in enumerate(parts) if any(c in part for c in "*?[")]
    if not wild:
        node = tree.lookup(path)
        out.add(node, path, "/" + node.rel if node is not None else path)
        return
    parent = tree.lookup("/".join(parts[: wild[0]]) or "/")
    if wild[0] != len(parts) - 1:  # e.g. --parents /src/**/x: the whole tree it searches
        out.add(parent, path, "/" + parent.rel if parent is not None else path)
        return
    out.walked.append(["pattern", path])
    for node in tree.children(parent) if parent is not None and parent.is_dir else []:
        if fnmatch.fnmatchcase(posixpath.basename(node.rel), parts[-1]):
            out.add(node, path, "/" + node.rel)


def _unreadable(exc: OSError) -> BuildError:
    return BuildError(
        f"cannot read a layer of the stage to key this step: {exc.strerror or exc}"
        + (f": {exc.filename}" if exc.filename else ""),
        hint="check the store's permissions; `pybuild cache verify` checks its layers",
    )


def mount_content(
    lowers: Sequence[Path], source: str, target: str, hash_file: FileHasher
) -> StageContent:
    """What ``RUN --mount=type=bind,from=...,source=...`` shows: ``source`` (links
    resolved inside the stage) and all below it, named where the RUN sees them."""
    from builder.ops.stagetree import StageTree  # here: only --from steps read layers

    tree = StageTree(lowers)
    out = _Collector(tree, hash_file)
    try:
        out.add(tree.lookup(clean(source)), clean(source), target)
    except OSError as exc:
        raise _unreadable(exc) from None
    return out.result()
