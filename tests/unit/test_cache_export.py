"""The cache export format, the local OCI layout, and importing records into a store."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.exporters.cache_transfer import CacheSpec, exported_stages, parse_cache_spec
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.planner import PlanRequest, make_plan
from cache.digest import sha256_bytes
from cache.errors import CacheError
from cache.index import Index, StepRecord
from cache.keys import KEY_VERSION, KeyInputs, inputs_to_json, step_key
from cache.oci import MEDIA_OCI_CONFIG, MEDIA_OCI_LAYER_ZSTD, Descriptor, Manifest
from cache.store import BlobStore
from cache.transfer.exporter import (
    MEDIA_CACHE_CONFIG,
    CacheConfig,
    InvalidCache,
    consistent,
    decode_config,
    encode_config,
    make_manifest,
    parse_manifest,
)
from cache.transfer.importer import import_records
from cache.transfer.layout import LayoutSource, write_layout

MADE = 1_700_000_000.25  # when a record's layer was made


def _record(blobs: BlobStore | None, instruction: str, content: bytes | None) -> StepRecord:
    inputs = KeyInputs(parent="image:sha256:" + "a" * 64, instruction=instruction, env=())
    layer = diff_id = None
    if content is not None:
        digest = blobs.put_bytes(content) if blobs is not None else sha256_bytes(content)
        layer = Descriptor(MEDIA_OCI_LAYER_ZSTD, digest, len(content))
        diff_id = sha256_bytes(b"diff:" + content)
    return StepRecord(step_key(inputs), layer, diff_id, inputs_to_json(inputs), 1.5, MADE)


@pytest.fixture
def store(tmp_path: Path) -> tuple[BlobStore, Index]:
    root = tmp_path / "store"
    return BlobStore(root), Index(root)


def test_config_round_trips_every_record_field() -> None:
    records = [_record(None, "RUN a", b"one"), _record(None, "RUN b", None)]
    config = decode_config(encode_config(records), "test")
    assert config.key_version == KEY_VERSION
    assert sorted(config.records, key=lambda r: r.key) == sorted(records, key=lambda r: r.key)


def test_manifest_lists_each_layer_once_with_our_artifact_type() -> None:
    shared = _record(None, "RUN a", b"same")
    other = StepRecord("f" * 64, shared.layer, shared.diff_id, shared.inputs, 2.0, 0.0)
    manifest, config = make_manifest([shared, other])
    doc = json.loads(manifest.to_bytes())
    assert doc["artifactType"] == MEDIA_CACHE_CONFIG
    assert doc["config"]["mediaType"] == MEDIA_CACHE_CONFIG
    assert doc["config"]["digest"] == str(sha256_bytes(config))
    assert [d["digest"] for d in doc["layers"]] == [str(shared.layer.digest)]  # type: ignore[union-attr]
    assert parse_manifest(manifest.to_bytes(), "test") == manifest


def test_an_image_manifest_is_not_taken_for_a_cache() -> None:
    config = Descriptor(MEDIA_OCI_CONFIG, sha256_bytes(b"{}"), 2)
    with pytest.raises(InvalidCache, match="is not a pybuild cache"):
        parse_manifest(Manifest(config, ()).to_bytes(), "reg/app:1")


@pytest.mark.parametrize(
    "doc",
    [
        {"keyVersion": 1},
        {"keyVersion": "1", "records": []},
        {"keyVersion": 1, "records": [{"key": "k"}]},
        {"keyVersion": 1, "records": [{"key": "k", "inputs": "{}", "layer": None, "diffID": "x"}]},
        {"keyVersion": 1, "records": ["k"]},
    ],
)
def test_malformed_configs_are_rejected(doc: object) -> None:
    with pytest.raises(InvalidCache):
        decode_config(json.dumps(doc).encode(), "test")


def test_a_record_whose_key_does_not_match_its_inputs_is_inconsistent() -> None:
    good = _record(None, "RUN a", b"x")
    assert consistent(good)
    assert not consistent(StepRecord("0" * 64, good.layer, good.diff_id, good.inputs, 1, 0))
    assert not consistent(StepRecord(good.key, None, None, "not json", 1, 0))


def test_layout_round_trip_imports_records_and_verified_blobs(
    tmp_path: Path, store: tuple[BlobStore, Index]
) -> None:
    src = BlobStore(tmp_path / "a")
    records = [_record(src, "RUN a", b"layer-a"), _record(src, "RUN b", None)]
    write_layout(tmp_path / "cache", records, src)
    assert json.loads((tmp_path / "cache" / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"
    }
    blobs, index = store
    layout = LayoutSource(tmp_path / "cache")
    result = import_records(layout.config(), layout, blobs, index, "cache")
    assert (result.imported, result.present, result.warnings) == (2, 0, ())
    for record in records:
        got = index.get_step(record.key)
        assert got is not None and got.layer == record.layer and got.inputs == record.inputs
    assert blobs.read_bytes(records[0].layer.digest) == b"layer-a"  # type: ignore[union-attr]
    again = import_records(layout.config(), layout, blobs, index, "cache")
    assert (again.imported, again.present) == (0, 2)


def test_a_corrupt_layout_blob_is_not_imported(
    tmp_path: Path, store: tuple[BlobStore, Index]
) -> None:
    src = BlobStore(tmp_path / "a")
    record = _record(src, "RUN a", b"layer-a")
    write_layout(tmp_path / "cache", [record], src)
    assert record.layer is not None
    (tmp_path / "cache" / "blobs" / "sha256" / record.layer.digest.hex).write_bytes(b"layer-b")
    blobs, index = store
    layout = LayoutSource(tmp_path / "cache")
    result = import_records(layout.config(), layout, blobs, index, "cache")
    assert result.imported == 0 and "does not match its digest" in result.warnings[0]
    assert index.get_step(record.key) is None
    assert not blobs.has(record.layer.digest)


def test_another_key_version_ignores_every_record(
    tmp_path: Path, store: tuple[BlobStore, Index]
) -> None:
    blobs, index = store
    record = _record(blobs, "RUN a", b"x")
    result = import_records(CacheConfig(99, (record,)), _NoFetch(), blobs, index, "there")
    assert result.imported == 0
    assert "key format version 99" in result.warnings[0]
    assert index.get_step(record.key) is None


def test_inconsistent_and_untyped_records_are_skipped(store: tuple[BlobStore, Index]) -> None:
    blobs, index = store
    good = _record(blobs, "RUN a", b"x")
    forged = StepRecord("0" * 64, good.layer, good.diff_id, good.inputs, 1.0, 0.0)
    odd = _record(blobs, "RUN b", b"y")
    assert odd.layer is not None
    odd = StepRecord(
        odd.key, Descriptor("text/plain", odd.layer.digest, 1), odd.diff_id, odd.inputs, 1, 0
    )
    result = import_records(
        CacheConfig(KEY_VERSION, (forged, odd, good)), _NoFetch(), blobs, index, "c"
    )
    assert result.imported == 1 and len(result.warnings) == 2
    assert index.get_step(forged.key) is None and index.get_step(odd.key) is None


class _NoFetch:
    def fetch(self, desc: Descriptor, blobs: BlobStore) -> None:
        if not blobs.has(desc.digest):
            raise CacheError(f"blob {desc.digest} is missing")


def test_layout_source_errors_name_the_directory(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="does not exist"):
        LayoutSource(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidCache, match=r"no index\.json"):
        LayoutSource(tmp_path / "empty")


def test_a_manifest_missing_from_the_layout_is_an_error(tmp_path: Path) -> None:
    src = BlobStore(tmp_path / "a")
    write_layout(tmp_path / "cache", [_record(src, "RUN a", b"x")], src)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    Path(tmp_path / "cache" / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).unlink()
    with pytest.raises(InvalidCache, match="is missing"):
        LayoutSource(tmp_path / "cache")


@pytest.mark.parametrize(
    ("flag", "spec", "expected"),
    [
        ("--cache-to", "type=local,dest=out", CacheSpec("local", "out", "min")),
        ("--cache-to", "type=local,dest=out,mode=max", CacheSpec("local", "out", "max")),
        ("--cache-from", "type=local,src=in", CacheSpec("local", "in")),
        ("--cache-to", "type=registry,ref=r/c:1,mode=max", CacheSpec("registry", "r/c:1", "max")),
        ("--cache-from", "r/c:1", CacheSpec("registry", "r/c:1")),
    ],
)
def test_cache_specs_parse_as_buildkit_writes_them(
    flag: str, spec: str, expected: CacheSpec
) -> None:
    assert parse_cache_spec(spec, flag) == expected


@pytest.mark.parametrize(
    "spec", ["type=s3,ref=x", "type=local", "type=local,dest=d,mode=all", "type=local,dest=d,x=1"]
)
def test_bad_cache_specs_raise_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError, match="--cache-to"):
        parse_cache_spec(spec, "--cache-to")


def test_min_mode_exports_the_target_and_the_stages_it_is_built_from() -> None:
    text = "FROM scratch AS a\nCOPY x /\nFROM scratch AS b\nCOPY --from=a / /\nFROM b\nCOPY y /\n"
    dockerfile = parse_dockerfile(text, "Dockerfile")

    def no_images(name: str, _instr: object) -> object:
        raise AssertionError(name)

    plan = make_plan(PlanRequest(dockerfile, {}, None, "host"), no_images)  # type: ignore[arg-type]
    assert exported_stages(plan, "min") == {1, 2}
    assert exported_stages(plan, "max") == {0, 1, 2}


def test_an_imported_record_keeps_the_time_its_layer_was_made(
    store: tuple[BlobStore, Index],
) -> None:
    blobs, index = store
    record = _record(blobs, "RUN a", b"x")
    before = time.time()
    result = import_records(CacheConfig(KEY_VERSION, (record,)), _NoFetch(), blobs, index, "c")
    assert result.imported == 1
    stored = index.get_step(record.key)
    assert stored is not None and stored.created == MADE
    assert stored.used is not None and stored.used >= before  # prune counts from the import


def test_a_record_exported_without_its_time_is_imported_as_made_now(
    store: tuple[BlobStore, Index],
) -> None:
    blobs, index = store
    record = dataclasses.replace(_record(blobs, "RUN a", b"x"), created=0.0)
    before = time.time()
    import_records(CacheConfig(KEY_VERSION, (record,)), _NoFetch(), blobs, index, "c")
    stored = index.get_step(record.key)
    assert stored is not None and stored.created >= before
