"""Stat cache: unchanged files are not re-read; any change, or a racy stat, re-reads."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from cache.fscache import StatCache, settled


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


def _times(mtime_ns: int, ctime_ns: int) -> os.stat_result:
    return cast(os.stat_result, SimpleNamespace(st_mtime_ns=mtime_ns, st_ctime_ns=ctime_ns))


def test_subsecond_timestamps_settle_after_a_tenth_of_a_second() -> None:
    t = 1_700_000_000_123_456_789
    assert not settled(_times(t, t), t / 1e9 + 0.05)
    assert settled(_times(t, t), t / 1e9 + 0.2)


def test_whole_second_timestamps_keep_the_two_second_window() -> None:
    # A filesystem that stores whole seconds (or 2 s, FAT) cannot tell writes apart
    # within that tick, so a hash taken 0.5 s after such a time is not trusted.
    t = 1_700_000_000_000_000_000
    assert not settled(_times(t, t), t / 1e9 + 0.5)
    assert not settled(_times(t, t + 123), t / 1e9 + 0.5)
    assert settled(_times(t, t), t / 1e9 + 2.5)


def test_settling_is_judged_by_the_time_before_the_read(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"abcd")
    st = f.stat()
    newest = max(st.st_mtime_ns, st.st_ctime_ns) / 1e9
    read = Reader()

    def clock() -> float:
        # Before the read the file is 10 ms old (racy); once read, 10 s old.
        return newest + (10 if read.calls else 0.01)

    with StatCache(tmp_path / "db", clock=clock) as cache:
        cache.hash_file(f, read)
        cache.hash_file(f, read)
    assert read.calls == 2


def test_a_file_changed_after_the_callers_stat_is_read_and_not_cached(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"abcd")
    old = os.lstat(f)
    f.write_bytes(b"wxyz!")
    read = Reader()
    with StatCache(tmp_path / "db", clock=_later) as cache:
        assert cache.hash_file(f, read, old) == b"wxyz"
        assert cache.hash_file(f, read, old) == b"wxyz"
    assert read.calls == 2  # the stat after reading differs from the one given


def test_callers_stat_of_an_unchanged_file_gives_a_hit(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"abcd")
    read = Reader()
    with StatCache(tmp_path / "db", clock=_later) as cache:
        cache.hash_file(f, read, os.lstat(f))
    with StatCache(tmp_path / "db", clock=_later) as again:
        assert again.hash_file(f, read, os.lstat(f)) == b"abcd"
    assert read.calls == 1


def test_hits_in_nested_and_sibling_directories_after_reading_ahead(tmp_path: Path) -> None:
    files = [tmp_path / "a" / "x.txt", tmp_path / "a" / "b" / "y.txt", tmp_path / "ab" / "z.txt"]
    for i, f in enumerate(files):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(f"{i}{i}{i}{i}".encode())
    read = Reader()
    with StatCache(tmp_path / "db", clock=_later) as cache:
        for f in files:
            cache.hash_file(f, read)
    with StatCache(tmp_path / "db", clock=_later) as again:
        # "a" first: its read-ahead covers a/b but must not be taken to cover "ab".
        assert [again.hash_file(f, read) for f in files] == [b"0000", b"1111", b"2222"]
        assert again.hits == 3
    assert read.calls == 3


def test_rows_written_after_the_read_ahead_cost_a_read_never_a_wrong_hash(
    tmp_path: Path,
) -> None:
    f, g = tmp_path / "a.txt", tmp_path / "b.txt"
    f.write_bytes(b"aaaa")
    g.write_bytes(b"bbbb")
    read = Reader()
    with StatCache(tmp_path / "db", clock=_later) as first:
        first.hash_file(f, read)  # reads ahead: no rows yet
        with StatCache(tmp_path / "db", clock=_later) as other:
            other.hash_file(g, read)  # another process caches b.txt
        assert first.hash_file(g, read) == b"bbbb"
    assert read.calls == 3


def test_a_remembered_file_is_not_read_again_until_it_is_replaced(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"just written")
    calls: list[Path] = []

    def read(path: Path) -> bytes:
        calls.append(path)
        return b"read:" + path.read_bytes()

    with StatCache(tmp_path / "db") as cache:
        cache.remember(blob, b"known")  # just written: no racy-window wait
        assert cache.hash_file(blob, read) == b"known"
        assert calls == [] and cache.reads == 0
    with StatCache(tmp_path / "db") as cache:
        assert cache.hash_file(blob, read) == b"known"  # kept across processes
        replacement = tmp_path / "new"
        replacement.write_bytes(b"another copy")
        os.replace(replacement, blob)  # a new inode, as the store replaces a blob
        assert cache.hash_file(blob, read) == b"read:another copy"
        assert calls == [blob]
