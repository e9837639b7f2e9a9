"""Index: step records, tags and last inputs in SQLite, shared by threads and processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache.digest import Digest, sha256_bytes
from cache.errors import CacheError
from cache.index import Index, StepRecord
from cache.oci import MEDIA_OCI_LAYER_ZSTD, Descriptor, Platform


def _digest(text: str) -> Digest:
    return sha256_bytes(text.encode())


def _record(key: str, *, with_layer: bool = True) -> StepRecord:
    layer = (
        Descriptor(
            MEDIA_OCI_LAYER_ZSTD,
            _digest(key + "blob"),
            123,
            annotations=(("a", "b"),),
            platform=Platform(),
        )
        if with_layer
        else None
    )
    return StepRecord(
        key=key,
        layer=layer,
        diff_id=_digest(key + "diff") if with_layer else None,
        inputs='{"version":1}',
        duration=1.5,
        created=1700000000.25,
    )


@pytest.fixture
def index(store_root: Path) -> Iterator[Index]:
    idx = Index(store_root)
    yield idx
    idx.close()


def test_creates_database_in_wal_mode(store_root: Path, index: Index) -> None:
    db = sqlite3.connect(store_root / "index.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert not list(store_root.glob(".index-*"))  # no temp file left behind


def test_step_round_trips_with_layer(index: Index) -> None:
    rec = _record("k1")
    index.put_step(rec)
    assert index.get_step("k1") == rec


def test_step_round_trips_without_layer(index: Index) -> None:
    rec = _record("k2", with_layer=False)
    index.put_step(rec)
    assert index.get_step("k2") == rec


def test_missing_step_is_none(index: Index) -> None:
    assert index.get_step("absent") is None


def test_put_step_replaces_same_key(index: Index) -> None:
    index.put_step(_record("k"))
    newer = _record("k", with_layer=False)
    index.put_step(newer)
    assert index.get_step("k") == newer
    assert index.steps() == [newer]


def test_remove_step(index: Index) -> None:
    index.put_step(_record("k"))
    assert index.remove_step("k")
    assert not index.remove_step("k")
    assert index.get_step("k") is None


def test_tags_round_trip_sorted_and_removable(index: Index) -> None:
    index.set_tag("b:1", _digest("b"))
    index.set_tag("a:1", _digest("a"))
    index.set_tag("b:1", _digest("b2"))
    assert index.get_tag("b:1") == _digest("b2")
    assert index.get_tag("zzz:1") is None
    assert index.tags() == [("a:1", _digest("a")), ("b:1", _digest("b2"))]
    assert index.remove_tag("a:1")
    assert not index.remove_tag("a:1")
    assert index.tags() == [("b:1", _digest("b2"))]


def test_last_inputs_round_trip(index: Index) -> None:
    step_id = "/ctx/Dockerfile#build#3"
    assert index.last_inputs(step_id) is None
    index.set_last_inputs(step_id, '{"a":1}')
    index.set_last_inputs(step_id, '{"a":2}')
    assert index.last_inputs(step_id) == '{"a":2}'


def test_data_persists_across_index_objects(store_root: Path) -> None:
    with Index(store_root) as first:
        first.set_tag("app:1", _digest("m"))
        first.put_step(_record("k"))
    with Index(store_root) as second:
        assert second.get_tag("app:1") == _digest("m")
        assert second.get_step("k") == _record("k")


def test_closed_index_raises_cache_error(store_root: Path) -> None:
    idx = Index(store_root)
    idx.close()
    idx.close()
    with pytest.raises(CacheError):
        idx.get_tag("x")


def test_newer_schema_is_refused_with_hint(store_root: Path) -> None:
    Index(store_root).close()
    db = sqlite3.connect(store_root / "index.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(CacheError) as info:
        Index(store_root)
    assert info.value.hint


def test_garbage_database_raises_cache_error(store_root: Path) -> None:
    (store_root / "index.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheError):
        Index(store_root)


def test_threads_share_one_index(index: Index) -> None:
    def work(n: int) -> None:
        for i in range(50):
            index.set_tag(f"t{n}-{i}:x", _digest(f"{n}-{i}"))
            index.put_step(_record(f"{n}-{i}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(index.tags()) == 200
    assert len(index.steps()) == 200


def _writer_process(root: str, n: int) -> None:
    with Index(Path(root)) as idx:
        for i in range(100):
            idx.set_tag(f"p{n}-{i}:x", _digest(f"{n}-{i}"))
            idx.put_step(_record(f"{n}-{i}"))
            idx.set_last_inputs(f"step{n}", str(i))


def test_concurrent_processes_create_and_write_the_same_index(store_root: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer_process, args=(str(store_root), n)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Index(store_root) as idx:
        assert len(idx.tags()) == 300
        assert len(idx.steps()) == 300
        assert idx.last_inputs("step2") == "99"
