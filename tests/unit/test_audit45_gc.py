"""Prune's size budget and age filter together never take what a tagged image needs."""

from __future__ import annotations

import time

from tests.unit.test_gc import DAY, Store, _prune, _tag, store  # noqa: F401  (fixture)


def test_keep_storage_zero_still_keeps_a_tagged_images_layers(store: Store) -> None:  # noqa: F811
    kept = store.record("kept", b"k" * 1000, used=time.time() - 10 * DAY)
    gone = store.record("gone", b"g" * 1000, used=time.time() - 10 * DAY)
    manifest = _tag(store, "app:1", kept)
    _prune(store, unused_for=None, keep_storage=0)
    assert store.blobs.has(manifest)
    assert kept.layer is not None and store.blobs.has(kept.layer.digest)
    assert kept.diff_id is not None and store.layers.get(kept.diff_id) is not None
    assert gone.layer is not None and not store.blobs.has(gone.layer.digest)


def test_keep_storage_with_until_drops_only_old_untagged_records(store: Store) -> None:  # noqa: F811
    now = time.time()
    tagged = store.record("tagged", b"t" * 1000, used=now - 5 * DAY)
    store.record("old", b"o" * 1000, used=now - 5 * DAY)
    store.record("fresh", b"f" * 1000, used=now - 60)
    _tag(store, "app:1", tagged)
    _prune(store, unused_for=DAY, keep_storage=10**9)
    keys = {r.key for r in store.index.steps()}
    assert "old" not in keys and "fresh" in keys
    assert tagged.layer is not None and store.blobs.has(tagged.layer.digest)
