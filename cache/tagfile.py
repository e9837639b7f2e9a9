"""``<root>/tags.json``: every tag and its manifest digest, beside the index.

The index (SQLite) is where tags are read from; this file is a copy kept in step with
it after every tag change, so a damaged index can be rebuilt without losing the tags
(``pybuild cache verify --repair``). It is rewritten whole (temp file, fsync, rename)
under ``<root>/locks/tags``, from the index's full tag list read inside the lock, so
concurrent tag changes leave it equal to the index.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from cache.digest import Digest
from cache.errors import InvalidDigest
from cache.store import exclusive_lock

FILE_NAME = "tags.json"


def tag_file(root: Path) -> Path:
    return root / FILE_NAME


def tags_lock(root: Path) -> Path:
    return root / "locks" / "tags"


def write_tags(root: Path, tags: list[tuple[str, Digest]]) -> None:
    """Replace the file with ``tags`` (call with ``tags_lock`` held)."""
    body = {"version": 1, "tags": {name: str(digest) for name, digest in sorted(tags)}}
    tmp = root / f".tags-{uuid.uuid4().hex}.json"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(body, indent=1, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, tag_file(root))
    finally:
        tmp.unlink(missing_ok=True)


def read_tag(root: Path, name: str) -> Digest | None:
    """The digest the file gives ``name``; None when it has none, or the file is
    missing or unreadable. Read without the lock: the file is only ever replaced whole
    (rename), so a reader sees one version of it."""
    try:
        entry = json.loads(tag_file(root).read_text(encoding="utf-8"))["tags"].get(name)
        return None if entry is None else Digest.parse(str(entry))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, InvalidDigest):
        return None


def read_tags(root: Path) -> tuple[list[tuple[str, Digest]], list[str]]:
    """The tags in the file, and the names of malformed entries; ([], []) with no file."""
    try:
        with exclusive_lock(tags_lock(root)):
            text = tag_file(root).read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    try:
        entries = json.loads(text)["tags"]
        items = list(entries.items())
    except (ValueError, KeyError, TypeError, AttributeError):
        return [], [str(tag_file(root))]
    good, bad = [], []
    for name, digest in items:
        try:
            good.append((str(name), Digest.parse(str(digest))))
        except InvalidDigest:
            bad.append(str(name))
    return good, bad
