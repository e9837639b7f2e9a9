"""A blob whose bytes went bad in the store is found, named, and replaced by the next write."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import IO

import pytest

from cache.layers import detect_compression, open_decompressed
from tests.integration.clihelp import Pybuild, steps_of, write_context

REPAIR = "pybuild cache verify --repair"
DOCKERFILE = "FROM busybox\nCOPY a.txt /a.txt\n"


def _blob(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _flip(path: Path) -> None:
    """Change one byte in place (same size, so only hashing can tell)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _top_layer(pybuild: Pybuild, image: str) -> str:
    layers = pybuild.inspect(image)["Manifest"]["layers"]
    return str(layers[-1]["digest"])


def _saved_file(pybuild: Pybuild, image: str, tmp_path: Path, name: str) -> bytes:
    """Save ``image`` as an OCI archive (every blob read verified) and read ``name`` in it."""
    archive = tmp_path / "saved.tar"
    pybuild("save", "--format", "oci", "-o", archive, image)
    with tarfile.open(archive) as outer:
        index = json.load(_member(outer, "index.json"))
        manifest = json.load(_member(outer, _blob_name(index["manifests"][0]["digest"])))
        top = manifest["layers"][-1]
        layer = _member(outer, _blob_name(top["digest"])).read()
    assert hashlib.sha256(layer).hexdigest() == top["digest"].removeprefix("sha256:")
    stream = open_decompressed(io.BytesIO(layer), detect_compression(layer[:8]))
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.name.lstrip("./") == name:
                return _member(tar, member).read()
    raise AssertionError(f"{name} is not in the top layer")


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _member(tar: tarfile.TarFile, name: str | tarfile.TarInfo) -> IO[bytes]:
    found = tar.extractfile(name)
    assert found is not None, name
    return found


def _verify(pybuild: Pybuild, *, clean: bool) -> str:
    result = pybuild("cache", "verify", ok=clean)
    assert (result.code == 0) == clean, result
    return result.out + result.err


@pytest.mark.requires_root
@pytest.mark.requires_overlay
def test_no_cache_rebuild_replaces_a_corrupt_layer_blob(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "alpha\n"}, DOCKERFILE)
    pybuild.build(ctx, "-t", "heal:1")
    layer = _top_layer(pybuild, "heal:1")
    _flip(_blob(pybuild.root, layer))

    report = _verify(pybuild, clean=False)
    assert f"corrupt-blob {layer}" in report
    assert REPAIR in report
    failed = pybuild("save", "--format", "oci", "-o", tmp_path / "bad.tar", "heal:1", ok=False)
    assert failed.code == 1 and "Traceback" not in failed.err
    assert REPAIR in " ".join(failed.err.split())

    pybuild.build(ctx, "-t", "heal:1", "--no-cache")
    assert _top_layer(pybuild, "heal:1") == layer  # the same layer, now whole again
    assert "clean" in _verify(pybuild, clean=True)
    assert _saved_file(pybuild, "heal:1", tmp_path, "a.txt") == b"alpha\n"
    assert pybuild("run", "--rm", "heal:1", "cat", "/a.txt").out == "alpha\n"


@pytest.mark.requires_root
@pytest.mark.requires_overlay
def test_cached_build_runs_a_step_again_when_its_layer_blob_went_bad(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "beta\n"}, DOCKERFILE)
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "-t", "heal:2")
    pybuild.build(ctx, "-t", "heal:2", "--metadata-file", meta)
    assert [s["cached"] for s in steps_of(meta)] == [True]
    layer = _top_layer(pybuild, "heal:2")
    _flip(_blob(pybuild.root, layer))

    pybuild.build(ctx, "-t", "heal:2", "--metadata-file", meta)
    (step,) = steps_of(meta)
    assert not step["cached"]
    assert "corrupt" in step["reason"]
    assert "clean" in _verify(pybuild, clean=True)
    assert _saved_file(pybuild, "heal:2", tmp_path, "a.txt") == b"beta\n"


def test_load_replaces_a_corrupt_blob_it_finds_in_the_store(
    pybuild: Pybuild, base_archive: Path, tmp_path: Path
) -> None:
    layer = _top_layer(pybuild, "busybox:latest")
    _flip(_blob(pybuild.root, layer))
    assert f"corrupt-blob {layer}" in _verify(pybuild, clean=False)

    pybuild("load", "-i", base_archive)
    assert "clean" in _verify(pybuild, clean=True)
    pybuild("save", "--format", "oci", "-o", tmp_path / "busybox.tar", "busybox:latest")
