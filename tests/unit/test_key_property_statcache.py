"""Context fingerprinting reads a file only when its stat changed (the persistent stat
cache, cache/fscache.py, plugged into BuildContext as the build does), and file
fingerprints are xxh3-128 of the content."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import xxhash

import builder.ops.context
from builder.ops.context import BuildContext
from cache.fscache import StatCache
from tests.unit.test_key_property_model import write_model_context


def _settled_clock() -> float:
    # Ten seconds ahead: every file looks older than the racy-clean guard, so it is cached.
    return time.time() + 10


class _Counting:
    """The real content hasher, counting the files it opens."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def __call__(self, path: Path) -> bytes:
        self.opened.append(path.name)
        return builder.ops.context._hash_file(path)


def _fingerprint(root: Path, db: Path, counter: _Counting) -> str:
    """One "build": a fresh BuildContext and StatCache, as two pybuild runs would have."""
    context = BuildContext(root)
    with StatCache(db, clock=_settled_clock) as cache:
        hasher: Callable[[Path], bytes] = counter
        context.hash_file = cache.cached(hasher)
        return context.fingerprint(["app", "requirements.txt"])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_model_context(tmp_path / "ctx")


def test_second_build_reads_no_file_and_gets_the_same_fingerprint(
    root: Path, tmp_path: Path
) -> None:
    counter = _Counting()
    first = _fingerprint(root, tmp_path / "fs.db", counter)
    read = ["data.txt", "main.py", "mod.py", "requirements.txt", "util.py"]
    assert sorted(counter.opened) == read
    counter.opened.clear()
    assert _fingerprint(root, tmp_path / "fs.db", counter) == first
    assert counter.opened == []


def test_only_the_file_whose_stat_changed_is_read_again(root: Path, tmp_path: Path) -> None:
    counter = _Counting()
    first = _fingerprint(root, tmp_path / "fs.db", counter)
    time.sleep(0.02)  # past the filesystem's timestamp tick, so the edit moves ctime
    (root / "app" / "util.py").write_text("X = 2\n")
    counter.opened.clear()
    second = _fingerprint(root, tmp_path / "fs.db", counter)
    assert counter.opened == ["util.py"]
    assert second != first


def test_touch_rereads_the_file_but_keeps_the_fingerprint(root: Path, tmp_path: Path) -> None:
    counter = _Counting()
    first = _fingerprint(root, tmp_path / "fs.db", counter)
    os.utime(root / "app" / "main.py", ns=(1, 1))
    counter.opened.clear()
    assert _fingerprint(root, tmp_path / "fs.db", counter) == first
    assert counter.opened == ["main.py"]  # stat moved: read again, found unchanged


def test_mode_change_is_seen_without_reading_unchanged_content_elsewhere(
    root: Path, tmp_path: Path
) -> None:
    counter = _Counting()
    first = _fingerprint(root, tmp_path / "fs.db", counter)
    time.sleep(0.02)
    os.chmod(root / "app" / "pkg" / "mod.py", 0o755)
    counter.opened.clear()
    assert _fingerprint(root, tmp_path / "fs.db", counter) != first
    assert counter.opened == ["mod.py"]


def test_file_fingerprint_is_xxh3_128_of_the_content(root: Path) -> None:
    data = (root / "app" / "main.py").read_bytes()
    assert (
        builder.ops.context._hash_file(root / "app" / "main.py") == xxhash.xxh3_128(data).digest()
    )
