"""BlobStore: atomic writes, verified reads, locks and temp cleanup."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from cache.digest import Digest, sha256_bytes
from cache.errors import BlobNotFound, CacheError, DigestMismatch, StoreLocked
from cache.store import BlobStore


@pytest.fixture
def store(store_root: Path) -> BlobStore:
    return BlobStore(store_root)


def test_init_creates_blob_and_tmp_dirs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "new")
    assert (tmp_path / "new" / "blobs" / "sha256").is_dir()
    assert store.tmp_dir == tmp_path / "new" / "tmp"
    assert store.tmp_dir.is_dir()


def test_put_bytes_round_trips_and_is_addressed_by_sha256(store: BlobStore) -> None:
    digest = store.put_bytes(b"hello")
    assert digest == sha256_bytes(b"hello")
    assert store.has(digest)
    assert store.read_bytes(digest) == b"hello"
    assert store.size(digest) == 5
    assert store.path(digest) == store.root / "blobs" / "sha256" / digest.hex


def test_put_bytes_twice_is_a_no_op(store: BlobStore) -> None:
    first = store.put_bytes(b"same")
    mtime = store.path(first).stat().st_mtime_ns
    assert store.put_bytes(b"same") == first
    assert store.path(first).stat().st_mtime_ns == mtime
    assert list(store.digests()) == [first]


def test_missing_blob_raises_blob_not_found_with_hint(store: BlobStore) -> None:
    missing = sha256_bytes(b"nope")
    assert not store.has(missing)
    for call in (store.path, store.size, store.read_bytes, store.open):
        with pytest.raises(BlobNotFound) as info:
            call(missing)
        assert info.value.hint


def test_writer_commits_with_digest_and_size(store: BlobStore) -> None:
    with store.writer() as w:
        w.write(b"abc")
        w.write(b"def")
    assert w.digest == sha256_bytes(b"abcdef")
    assert w.size == 6
    assert store.read_bytes(w.digest) == b"abcdef"


def test_writer_digest_unavailable_before_commit(store: BlobStore) -> None:
    with store.writer() as w:
        w.write(b"x")
        with pytest.raises(CacheError):
            _ = w.digest


def test_writer_exception_leaves_no_blob_and_no_temp_file(store: BlobStore) -> None:
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"partial content")
        raise RuntimeError("boom")
    assert list(store.digests()) == []
    assert list(store.tmp_dir.iterdir()) == []
    assert not store.has(sha256_bytes(b"partial content"))


def test_writer_expected_digest_mismatch_raises_and_stores_nothing(store: BlobStore) -> None:
    with pytest.raises(DigestMismatch), store.writer(expected=sha256_bytes(b"other")) as w:
        w.write(b"content")
    assert list(store.digests()) == []
    assert list(store.tmp_dir.iterdir()) == []


def test_writer_expected_digest_match_commits(store: BlobStore) -> None:
    with store.writer(expected=sha256_bytes(b"content")) as w:
        w.write(b"content")
    assert store.has(sha256_bytes(b"content"))


def _corrupt(store: BlobStore, digest: Digest, data: bytes) -> None:
    path = store.path(digest)
    path.chmod(0o644)
    path.write_bytes(data)


def test_corrupt_blob_detected_by_read_bytes(store: BlobStore) -> None:
    digest = store.put_bytes(b"good content")
    _corrupt(store, digest, b"evil content")
    with pytest.raises(DigestMismatch):
        store.read_bytes(digest)


def test_corrupt_blob_detected_at_eof_by_open(store: BlobStore) -> None:
    digest = store.put_bytes(b"good content" * 1000)
    _corrupt(store, digest, b"evil content" * 1000)
    with store.open(digest) as f:
        assert f.read(4) == b"evil"  # no verdict before the end
        with pytest.raises(DigestMismatch):
            while f.read(100):
                pass


def test_open_reads_intact_blob_to_eof_without_error(store: BlobStore) -> None:
    data = os.urandom(3 << 20)
    digest = store.put_bytes(data)
    with store.open(digest) as f:
        assert f.read() == data


def test_truncated_blob_detected_by_open(store: BlobStore) -> None:
    digest = store.put_bytes(b"0123456789")
    _corrupt(store, digest, b"01234")
    with store.open(digest) as f, pytest.raises(DigestMismatch):
        f.read()


def test_reading_a_corrupt_blob_says_to_run_cache_verify_repair(store: BlobStore) -> None:
    digest = store.put_bytes(b"good content" * 1000)
    _corrupt(store, digest, b"evil content" * 1000)
    with pytest.raises(DigestMismatch) as whole:
        store.read_bytes(digest)
    with store.open(digest) as f, pytest.raises(DigestMismatch) as streamed:
        f.read()
    for exc in (whole.value, streamed.value):
        assert exc.hint is not None and "pybuild cache verify --repair" in exc.hint


def test_intact_is_false_for_a_corrupt_or_missing_blob(store: BlobStore) -> None:
    good = store.put_bytes(b"good content")
    bad = store.put_bytes(b"other content")
    _corrupt(store, bad, b"other CONTENT")
    assert store.intact(good)
    assert not store.intact(bad)
    assert not store.intact(sha256_bytes(b"never stored"))


def test_writer_replaces_a_stored_blob_whose_bytes_went_bad(store: BlobStore) -> None:
    data = os.urandom(64 << 10)
    digest = store.put_bytes(data)
    _corrupt(store, digest, bytes([data[0] ^ 0xFF]) + data[1:])
    with store.writer(expected=digest) as w:
        w.write(data)
    assert store.read_bytes(digest) == data
    assert [p for p in store.tmp_dir.iterdir() if p.name.startswith("blob-")] == []


def test_put_bytes_replaces_a_stored_blob_whose_bytes_went_bad(store: BlobStore) -> None:
    digest = store.put_bytes(b"good content")
    _corrupt(store, digest, b"evil content")
    assert store.put_bytes(b"good content") == digest
    assert store.read_bytes(digest) == b"good content"


def test_remove_deletes_and_tolerates_missing(store: BlobStore) -> None:
    digest = store.put_bytes(b"bye")
    store.remove(digest)
    assert not store.has(digest)
    store.remove(digest)


def test_digests_lists_blobs_and_skips_stray_files(store: BlobStore) -> None:
    a, b = store.put_bytes(b"a"), store.put_bytes(b"b")
    (store.root / "blobs" / "sha256" / "not-a-digest").write_text("x")
    assert sorted(store.digests()) == sorted([a, b])


def test_lock_excludes_another_holder(store: BlobStore) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with store.lock("build"):
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(5)
        with pytest.raises(StoreLocked), store.lock("build", timeout=0.2):
            pass
    finally:
        release.set()
        t.join()
    with store.lock("build", timeout=1):
        pass
    assert (store.root / "locks" / "build").exists()


def test_lock_rejects_names_with_slashes(store: BlobStore) -> None:
    with pytest.raises(CacheError), store.lock("../escape"):
        pass


def _age(path: Path, seconds: float) -> None:
    """Pretend ``path`` was last changed ``seconds`` ago."""
    old = time.time() - seconds
    os.utime(path, (old, old), follow_symlinks=False)


def test_clean_tmp_removes_only_old_unlocked_entries(store: BlobStore) -> None:
    stale_file = store.tmp_dir / "blob-stale"
    stale_file.write_bytes(b"x")
    stale_dir = store.tmp_dir / "dir-stale"
    (stale_dir / "sub").mkdir(parents=True)
    fresh = store.tmp_dir / "blob-fresh"
    fresh.write_bytes(b"y")
    _age(fresh, 3600)  # an hour-old unlocked entry may be a live build step's
    for path in (stale_file, stale_dir):
        _age(path, 3 * 24 * 3600)
    with store.writer() as live, store.temp_dir() as live_dir:
        live.write(b"in progress")
        _age(live.tmp_path, 3 * 24 * 3600)
        _age(live_dir, 3 * 24 * 3600)
        store.clean_tmp()
        assert live.tmp_path.exists()
        assert live_dir.exists()
    assert not stale_file.exists()
    assert not stale_dir.exists()
    assert fresh.exists()
    assert store.has(live.digest)
    store.clean_tmp(grace=60)
    assert not fresh.exists()


def test_temp_dir_is_removed_on_exit_unless_moved(store: BlobStore) -> None:
    with store.temp_dir() as kept:
        (kept / "f").write_text("x")
        kept.rename(store.root / "moved")
    assert (store.root / "moved" / "f").exists()
    with store.temp_dir() as gone:
        (gone / "sub").mkdir()
    assert not gone.exists()


def _put_many(root: str, start: int) -> None:
    store = BlobStore(Path(root))
    for i in range(start, start + 50):
        store.put_bytes(f"blob {i % 60}".encode())


def test_concurrent_processes_write_the_same_blobs_safely(store_root: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_put_many, args=(str(store_root), s)) for s in (0, 10, 20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    store = BlobStore(store_root)
    assert len(list(store.digests())) == 60
    for digest in store.digests():
        store.read_bytes(digest)
    assert list(store.tmp_dir.iterdir()) == []
