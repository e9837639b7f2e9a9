"""cache verify: corrupt blobs, records with missing blobs, strays; --repair removes them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache.digest import sha256_bytes
from cache.images import write_image
from cache.index import Index, StepRecord
from cache.oci import MEDIA_OCI_LAYER, Descriptor, ImageConfig
from cache.store import BlobStore
from cache.unpacked import UnpackedLayers
from cache.verify import VerifyReport, verify_store


class Store:
    def __init__(self, root: Path) -> None:
        self.blobs = BlobStore(root)
        self.layers = UnpackedLayers(self.blobs)
        self.index = Index(root)

    def record(self, key: str, content: bytes) -> StepRecord:
        digest = self.blobs.put_bytes(content)
        diff_id = sha256_bytes(b"diff" + content)
        (self.layers.root / diff_id.hex).mkdir()
        self.layers.meta.record(diff_id.hex, self.layers.root / diff_id.hex)  # as placing does
        layer = Descriptor(MEDIA_OCI_LAYER, digest, len(content))
        rec = StepRecord(key, layer, diff_id, "{}", 1.0, time.time())
        self.index.put_step(rec)
        return rec

    def verify(self, *, repair: bool = False) -> VerifyReport:
        return verify_store(self.blobs, self.layers, self.index, repair=repair)


@pytest.fixture
def store(store_root: Path) -> Iterator[Store]:
    s = Store(store_root)
    yield s
    s.index.close()


def _kinds(report: VerifyReport) -> list[str]:
    return sorted(f.kind for f in report.problems)


def test_sound_store_is_clean_and_reports_unreferenced_blobs_as_notes(store: Store) -> None:
    rec = store.record("k", b"layer")
    assert rec.layer is not None and rec.diff_id is not None
    image = write_image(store.blobs, ImageConfig(diff_ids=(rec.diff_id,)), [rec.layer])
    store.index.set_tag("app:1", image.digest)
    store.blobs.put_bytes(b"nobody uses me")
    report = store.verify()
    assert report.clean
    assert report.blobs_checked == 4
    assert [f.kind for f in report.findings] == ["unreferenced"]


def test_corrupt_blob_is_a_problem_and_repair_removes_it_and_its_record(store: Store) -> None:
    rec = store.record("k", b"layer")
    assert rec.layer is not None
    store.blobs.path(rec.layer.digest).write_bytes(b"bit rot")
    assert _kinds(store.verify()) == ["corrupt-blob", "missing-blob"]
    repaired = store.verify(repair=True)
    assert len(repaired.repaired) == 2
    assert not store.blobs.has(rec.layer.digest)
    assert store.index.get_step("k") is None
    assert store.verify().clean


def test_record_whose_blob_is_gone_is_a_problem(store: Store) -> None:
    rec = store.record("k", b"layer")
    assert rec.layer is not None
    store.blobs.remove(rec.layer.digest)
    assert _kinds(store.verify()) == ["missing-blob"]


def test_tag_of_a_missing_manifest_is_a_broken_tag(store: Store) -> None:
    store.index.set_tag("ghost:1", sha256_bytes(b"no such manifest"))
    assert _kinds(store.verify()) == ["broken-tag"]
    store.verify(repair=True)
    assert store.index.tags() == []


def test_stray_files_are_problems_and_unknown_unpacked_dirs_are_notes(store: Store) -> None:
    (store.blobs.root / "blobs" / "sha256" / "junk").write_text("x")
    (store.layers.root / ("ab" * 32)).mkdir()
    report = store.verify()
    assert _kinds(report) == ["stray-file"]
    assert "unreferenced-layer" in [f.kind for f in report.findings]
    store.verify(repair=True)
    after = store.verify()
    assert after.clean and after.findings == ()


def test_a_file_added_to_an_unpacked_layer_is_a_problem(store: Store) -> None:
    rec = store.record("k", b"layer")
    assert rec.diff_id is not None
    (store.layers.root / rec.diff_id.hex / "planted").write_text("x")
    report = store.verify()
    assert _kinds(report) == ["tampered-layer"]
    assert "added: planted" in report.problems[0].detail


def test_a_manifest_of_a_layer_no_longer_unpacked_is_a_note_repair_removes(store: Store) -> None:
    rec = store.record("k", b"layer")
    assert rec.diff_id is not None
    (store.layers.root / rec.diff_id.hex).rmdir()
    report = store.verify()
    assert report.clean
    assert [f.kind for f in report.findings if f.kind == "stale-layer-record"] == [
        "stale-layer-record"
    ]
    store.verify(repair=True)
    assert store.layers.meta.names() == set()
