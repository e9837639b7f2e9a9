"""Stat cache: unchanged files are not re-read; any change, or a racy stat, re-reads."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cache.fscache import StatCache


class Reader:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> bytes:
        self.calls += 1
        return path.read_bytes()[:4].ljust(4, b".")


def _later() -> float:
    """A clock 10 s ahead, so files written by the test count as settled."""
    return time.time() + 10


def test_unchanged_file_is_read_once_across_cache_objects(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"abcd")
    db = tmp_path / "fscache.db"
    read = Reader()
    with StatCache(db, clock=_later) as cache:
        assert cache.hash_file(f, read) == b"abcd"
        assert cache.hash_file(f, read) == b"abcd"
    with StatCache(db, clock=_later) as again:
        assert again.hash_file(f, read) == b"abcd"
        assert again.hits == 1 and again.reads == 0
    assert read.calls == 1


def test_content_change_with_same_size_and_mtime_is_still_seen(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"abcd")
    st = f.stat()
    read = Reader()
    with StatCache(tmp_path / "db", clock=_later) as cache:
        cache.hash_file(f, read)
        f.write_bytes(b"wxyz")
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored; ctime moved
        assert cache.hash_file(f, read) == b"wxyz"
    assert read.calls == 2


def test_replaced_file_is_reread(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"abcd")
    read = Reader()
    with StatCache(tmp_path / "db", clock=_later) as cache:
        cache.hash_file(f, read)
        other = tmp_path / "b.txt"
        other.write_bytes(b"efgh")
        os.replace(other, f)
        assert cache.hash_file(f, read) == b"efgh"


def test_files_changed_just_now_are_not_cached(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"abcd")
    read = Reader()
    with StatCache(tmp_path / "db") as cache:
        cache.hash_file(f, read)
        cache.hash_file(f, read)
    assert read.calls == 2  # a write in the same timestamp tick could go unseen otherwise


def test_unusable_cache_file_is_a_pass_through(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"abcd")
    bad = tmp_path / "db"
    bad.write_bytes(b"not a database at all, just junk " * 10)
    read = Reader()
    with StatCache(bad, clock=_later) as cache:
        assert cache.hash_file(f, read) == b"abcd"
        assert cache.hash_file(f, read) == b"abcd"
