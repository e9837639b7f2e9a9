"""Prune and du: tagged images are untouchable; records go by age, --all or a size budget."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cache.digest import Digest, sha256_bytes
from cache.errors import StoreLocked
from cache.gc import PruneOptions, prune, usage
from cache.gclock import build_guard, exclusive_guard
from cache.images import write_image
from cache.index import Index, StepRecord
from cache.oci import MEDIA_OCI_LAYER, Descriptor, ImageConfig
from cache.store import BlobStore
from cache.unpacked import UnpackedLayers

DAY = 86400.0


@dataclass
class Store:
    blobs: BlobStore
    layers: UnpackedLayers
    index: Index

    def layer(self, content: bytes) -> tuple[Descriptor, Digest]:
        """A fake layer blob plus its unpacked dir (named by a made-up diff_id)."""
        digest = self.blobs.put_bytes(content)
        diff_id = sha256_bytes(b"diff" + content)
        (self.layers.root / diff_id.hex).mkdir()
        (self.layers.root / diff_id.hex / "f").write_bytes(content)
        return Descriptor(MEDIA_OCI_LAYER, digest, len(content)), diff_id

    def record(self, key: str, content: bytes, *, used: float) -> StepRecord:
        layer, diff_id = self.layer(content)
        rec = StepRecord(key, layer, diff_id, "{}", 1.0, used, used)
        self.index.put_step(rec)
        return rec


@pytest.fixture
def store(store_root: Path) -> Iterator[Store]:
    blobs = BlobStore(store_root)
    index = Index(store_root)
    yield Store(blobs, UnpackedLayers(blobs), index)
    index.close()


def _tag(store: Store, name: str, *records: StepRecord) -> Digest:
    layers = [r.layer for r in records if r.layer]
    diff_ids = tuple(r.diff_id for r in records if r.diff_id)
    image = write_image(store.blobs, ImageConfig(diff_ids=diff_ids), layers)
    store.index.set_tag(name, image.digest)
    return image.digest


def _prune(store: Store, **options: object) -> None:
    prune(store.blobs, store.layers, store.index, PruneOptions(**options))  # type: ignore[arg-type]


def test_prune_all_never_removes_what_a_tagged_image_needs(store: Store) -> None:
    kept = store.record("kept", b"tagged layer", used=time.time() - 10 * DAY)
    gone = store.record("gone", b"other layer", used=time.time() - 10 * DAY)
    manifest = _tag(store, "app:1", kept)
    _prune(store, remove_all=True, unused_for=None)
    assert store.index.get_step("kept") is not None
    assert store.index.get_step("gone") is None
    assert store.blobs.has(manifest)
    assert kept.layer is not None and store.blobs.has(kept.layer.digest)
    assert kept.diff_id is not None and store.layers.get(kept.diff_id) is not None
    assert gone.layer is not None and not store.blobs.has(gone.layer.digest)
    assert gone.diff_id is not None and store.layers.get(gone.diff_id) is None


def test_default_prune_keeps_recently_used_records(store: Store) -> None:
    store.record("recent", b"recent", used=time.time() - 3600)
    store.record("old", b"old", used=time.time() - 3 * DAY)
    _prune(store)  # 48 hours unused
    assert store.index.get_step("recent") is not None
    assert store.index.get_step("old") is None


def test_until_filter_sets_the_age(store: Store) -> None:
    store.record("hour", b"hour", used=time.time() - 2 * 3600)
    _prune(store, unused_for=3600.0)
    assert store.index.get_step("hour") is None


def test_untagged_image_blobs_are_removed(store: Store) -> None:
    rec = store.record("r", b"layer", used=time.time())
    manifest = _tag(store, "tmp:1", rec)
    store.index.remove_tag("tmp:1")
    _prune(store)
    assert not store.blobs.has(manifest)
    assert rec.layer is not None and store.blobs.has(rec.layer.digest)  # its record is recent


def test_keep_storage_drops_least_recently_used_first(store: Store) -> None:
    now = time.time()
    store.record("oldest", b"a" * 1000, used=now - 30)
    store.record("middle", b"b" * 1000, used=now - 20)
    store.record("newest", b"c" * 1000, used=now - 10)
    _prune(store, unused_for=None, keep_storage=2000)
    assert [r.key for r in store.index.steps()] == ["middle", "newest"]


def test_usage_counts_bytes_by_kind(store: Store) -> None:
    rec = store.record("r", b"x" * 500, used=time.time())
    _tag(store, "app:1", rec)
    store.blobs.put_bytes(b"orphan" * 10)
    use = usage(store.blobs, store.layers, store.index)
    assert use.layer_blobs == 500
    assert use.other_blobs == 60
    assert use.config_blobs > 0
    assert use.unpacked == 500
    assert use.index > 0
    assert use.total >= 500 + 60 + 500


def test_prune_waits_for_running_builds_then_gives_up(store_root: Path) -> None:
    with (
        build_guard(store_root),
        pytest.raises(StoreLocked),
        exclusive_guard(store_root, timeout=0.2),
    ):
        pass
    with build_guard(store_root), build_guard(store_root):
        pass  # builds share the guard


def test_clean_dead_tmp_removes_unlocked_leftovers_but_not_live_or_fresh_ones(
    store: Store,
) -> None:
    import os

    from cache.deadtmp import clean_dead_tmp

    tmp = store.blobs.tmp_dir
    dead = tmp / "step-dead"
    (dead / "upper").mkdir(parents=True)
    dead_blob = tmp / "blob-dead"
    dead_blob.write_bytes(b"half a blob")
    other = tmp / "memo-someone-elses"
    other.mkdir()
    for path in (dead, dead_blob, other):
        os.utime(path, (time.time() - 60, time.time() - 60))
    with store.blobs.temp_dir("step-") as live:
        os.utime(live, (time.time() - 60, time.time() - 60))
        fresh = tmp / "dir-fresh"
        fresh.mkdir()
        assert clean_dead_tmp(store.blobs) == 2
        assert live.is_dir() and fresh.is_dir() and other.is_dir()
    assert not dead.exists() and not dead_blob.exists()


def test_keep_storage_zero_still_keeps_a_tagged_images_layers(store: Store) -> None:
    kept = store.record("kept", b"k" * 1000, used=time.time() - 10 * DAY)
    gone = store.record("gone", b"g" * 1000, used=time.time() - 10 * DAY)
    manifest = _tag(store, "app:1", kept)
    _prune(store, unused_for=None, keep_storage=0)
    assert store.blobs.has(manifest)
    assert kept.layer is not None and store.blobs.has(kept.layer.digest)
    assert kept.diff_id is not None and store.layers.get(kept.diff_id) is not None
    assert gone.layer is not None and not store.blobs.has(gone.layer.digest)


def test_keep_storage_with_until_drops_only_old_untagged_records(store: Store) -> None:
    now = time.time()
    tagged = store.record("tagged", b"t" * 1000, used=now - 5 * DAY)
    store.record("old", b"o" * 1000, used=now - 5 * DAY)
    store.record("fresh", b"f" * 1000, used=now - 60)
    _tag(store, "app:1", tagged)
    _prune(store, unused_for=DAY, keep_storage=10**9)
    keys = {r.key for r in store.index.steps()}
    assert "old" not in keys and "fresh" in keys
    assert tagged.layer is not None and store.blobs.has(tagged.layer.digest)


def test_a_killed_layer_record_writers_temp_is_swept_but_not_a_live_ones(store: Store) -> None:
    import fcntl
    import os

    from cache.deadtmp import clean_dead_tmp

    tmp = store.blobs.tmp_dir
    dead = tmp / "meta-dead"
    dead.write_text("half a manifest")
    live = tmp / "meta-live"
    live.write_text("being written")
    for path in (dead, live):
        os.utime(path, (time.time() - 60, time.time() - 60))
    with open(live) as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as cache.layermeta holds it while writing
        assert clean_dead_tmp(store.blobs) == 1
    assert not dead.exists() and live.exists()
