"""Image IDs that do not depend on when or where a build ran.

BuildKit takes the ``created`` times of an image's history and config from the cache
records of its layers, never from the clock (exporter/containerimage/writer.go,
``normalizeLayersAndHistory`` and ``patchImageConfig``), so a fully cached rebuild gives
the same image ID and manifest digest.
"""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from cache.layers import detect_compression, open_decompressed
from tests.integration.clihelp import Pybuild, steps_of, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

DOCKERFILE = 'FROM busybox\nENV A=1\nCOPY a.txt /a\nRUN echo x > /x\nCMD ["sh"]\n'


def _digests(meta: Path) -> tuple[str, str]:
    doc = json.loads(meta.read_text())
    return doc["image.id"], doc["containerimage.digest"]


def test_fully_cached_rebuild_in_a_later_second_gives_the_same_image_id_and_digest(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, DOCKERFILE)
    meta = tmp_path / "meta.json"
    first_id = pybuild.build(ctx, "-q", "--metadata-file", meta).out.strip()
    first = _digests(meta)
    time.sleep(1.1)  # a clock-made time would differ now
    second_id = pybuild.build(ctx, "-q", "--metadata-file", meta).out.strip()
    assert all(s["cached"] for s in steps_of(meta))
    assert first_id.startswith("sha256:") and second_id == first_id == first[0]
    assert _digests(meta) == first


def test_history_takes_each_layers_time_and_metadata_steps_the_layer_time_before_them(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, DOCKERFILE)
    before = time.time()
    image = pybuild.build(ctx, "-q").out.strip()
    config = pybuild.inspect(image)["Config"]
    base = len(pybuild.inspect("busybox")["Config"].get("history", []))
    env, copy, run, cmd = config["history"][base:]
    assert env["created"] == copy["created"]  # before the first new layer: its time
    assert cmd["created"] == run["created"]  # after a layer: that layer's time
    assert copy["created"] <= run["created"]
    assert config["created"] == cmd["created"]  # the last history entry's time
    made = time.strptime(run["created"][:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(made) - time.timezone - before) < 120


def test_image_created_follows_the_epoch_when_given(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, DOCKERFILE)
    image = pybuild.build(ctx, "-q", "--source-date-epoch", "1700000000").out.strip()
    config = pybuild.inspect(image)["Config"]
    base = len(pybuild.inspect("busybox")["Config"].get("history", []))
    assert {h["created"] for h in config["history"][base:]} == {"2023-11-14T22:13:20Z"}
    assert config["created"] == "2023-11-14T22:13:20Z"


def test_build_from_an_imported_cache_gives_the_image_id_of_the_exporting_build(
    pybuild: Pybuild, tmp_path: Path, base_archive: Path
) -> None:
    """BuildKit carries each layer's creation time in its cache ("buildkit/createdat",
    cache/refs.go; remotecache/import.go)."""
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, DOCKERFILE)
    cache = tmp_path / "cache"
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--metadata-file", meta, "--cache-to", f"type=local,dest={cache},mode=max")
    exported = _digests(meta)
    time.sleep(1.1)
    other = Pybuild(tmp_path / "storeB")
    other("load", "-i", base_archive)
    meta_b = tmp_path / "metaB.json"
    other.build(ctx, "--metadata-file", meta_b, "--cache-from", f"type=local,src={cache}")
    assert all(s["cached"] for s in steps_of(meta_b))
    assert _digests(meta_b) == exported


# BuildKit docs/build-repro.md "SOURCE_DATE_EPOCH": the epoch applies to file times in
# the image's layers through the exporter (``rewrite-timestamp``), which rewrites the
# layers when the image is assembled; the cache keeps the layers as they were made.
EPOCH = "1700000000"
WORKDIR_FILE = "FROM busybox\nWORKDIR /app\nCOPY a.txt .\nRUN echo x > /app/x\n"


def _epoch_digest(cli: Pybuild, ctx: Path, meta: Path, epoch: str) -> tuple[str, str]:
    cli.build(ctx, "--source-date-epoch", epoch, "--metadata-file", meta)
    return _digests(meta)


def test_epoch_build_gives_the_same_digest_whatever_the_store_held_before(
    pybuild: Pybuild, tmp_path: Path, base_archive: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, WORKDIR_FILE)
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--metadata-file", meta)  # store A: first without an epoch
    time.sleep(1.1)  # store B's layers are made in another second
    warm = _epoch_digest(pybuild, ctx, meta, EPOCH)
    assert all(s["cached"] for s in steps_of(meta))  # the epoch reuses the layers
    empty = Pybuild(tmp_path / "storeB")
    empty("load", "-i", base_archive)
    cold = _epoch_digest(empty, ctx, tmp_path / "metaB.json", EPOCH)
    assert warm == cold


def test_epoch_build_after_a_build_with_another_epoch_gives_the_same_digest(
    pybuild: Pybuild, tmp_path: Path, base_archive: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, WORKDIR_FILE)
    meta = tmp_path / "meta.json"
    _epoch_digest(pybuild, ctx, meta, "1600000000")
    warm = _epoch_digest(pybuild, ctx, meta, EPOCH)
    empty = Pybuild(tmp_path / "storeB")
    empty("load", "-i", base_archive)
    assert warm == _epoch_digest(empty, ctx, tmp_path / "metaB.json", EPOCH)


def test_epoch_clamps_the_file_times_of_reused_layers(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, WORKDIR_FILE)
    pybuild.build(ctx)  # layers made now, unclamped
    out = pybuild.rootfs(ctx, tmp_path / "out", "--source-date-epoch", EPOCH)
    for path in ("app", "app/a.txt", "app/x"):
        assert (out / path).lstat().st_mtime == int(EPOCH), path


def test_build_without_epoch_after_an_epoch_build_keeps_the_real_file_times(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, WORKDIR_FILE)
    before = time.time()
    pybuild.build(ctx, "--source-date-epoch", EPOCH)
    out = pybuild.rootfs(ctx, tmp_path / "out")
    assert (out / "app" / "x").lstat().st_mtime >= int(before)  # the cache was not clamped


def test_prune_keeps_the_records_behind_a_tagged_epoch_images_clamped_layers(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, WORKDIR_FILE)
    meta = tmp_path / "meta.json"
    first = _epoch_digest(pybuild, ctx, meta, EPOCH)
    pybuild.build(ctx, "-t", "kept:1", "--source-date-epoch", EPOCH)
    pybuild("cache", "prune", "--all")
    assert pybuild("run", "--rm", "kept:1", "cat", "/app/x").out == "x\n"
    assert _epoch_digest(pybuild, ctx, meta, EPOCH) == first
    assert all(s["cached"] for s in steps_of(meta))  # the tagged image still hits


OLD = 1_000_000_000  # 2001: older than EPOCH


def _layer_mtimes(pybuild: Pybuild, meta: Path) -> dict[str, int]:
    """File times in the image's top layer (the cached step's layer keeps the real ones:
    the epoch is applied when the image is assembled, as BuildKit's rewrite-timestamp)."""
    blobs = pybuild.root / "blobs" / "sha256"
    manifest = json.loads(meta.read_text())["containerimage.digest"].removeprefix("sha256:")
    layer = json.loads((blobs / manifest).read_text())["layers"][-1]["digest"]
    blob = blobs / layer.removeprefix("sha256:")
    with blob.open("rb") as raw:
        compression = detect_compression(raw.read(8))
        raw.seek(0)
        with tarfile.open(fileobj=open_decompressed(raw, compression), mode="r|") as tar:
            return {m.name: int(m.mtime) for m in tar}


def test_source_date_epoch_clamps_newer_mtimes_and_keeps_older_ones(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"old.txt": "o", "new.txt": "n"}, "FROM busybox\nCOPY *.txt /d/\n"
    )
    os.utime(ctx / "old.txt", (OLD, OLD))
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--source-date-epoch", EPOCH, "--metadata-file", meta)
    mtimes = _layer_mtimes(pybuild, meta)
    assert mtimes["d/old.txt"] == OLD
    assert mtimes["d/new.txt"] == int(EPOCH)
    assert all(t <= int(EPOCH) for t in mtimes.values())
