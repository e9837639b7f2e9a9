"""builder.export: OCI and docker archives, and the flattened root filesystem."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from builder.archive import LoadedImage, load_archive
from builder.errors import BuildError
from builder.export import write_docker_archive, write_oci_archive, write_rootfs
from cache.digest import Digest, sha256_bytes
from cache.images import write_image
from cache.index import Index
from cache.oci import (
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_ZSTD,
    ContainerConfig,
    Descriptor,
    ImageConfig,
)
from cache.store import BlobStore
from tests.archive_samples import compress, layer, tar_of

BASE = layer({"bin/sh": b"#!fake shell\n", "etc/motd": b"base\n"})
APP = layer({"app/run": b"echo hi\n", "etc/motd": b"app\n"})


@pytest.fixture
def blobs(store_root: Path) -> BlobStore:
    return BlobStore(store_root)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[BlobStore, Index]]:
    """A second, empty store to load archives back into."""
    root = tmp_path / "other-store"
    root.mkdir()
    index = Index(root)
    yield BlobStore(root), index
    index.close()


def store_image(blobs: BlobStore, layers: list[bytes], how: str = "none") -> Digest:
    media = {"none": MEDIA_OCI_LAYER, "gzip": MEDIA_OCI_LAYER_GZIP, "zstd": MEDIA_OCI_LAYER_ZSTD}
    descriptors = []
    for data in layers:
        blob = compress(data, how)
        descriptors.append(Descriptor(media[how], blobs.put_bytes(blob), len(blob)))
    config = ImageConfig(
        config=ContainerConfig(env=("PATH=/bin",), cmd=("sh",)),
        diff_ids=tuple(sha256_bytes(data) for data in layers),
    )
    return write_image(blobs, config, descriptors).digest


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def test_oci_archive_round_trip_keeps_manifest_digest_and_name(
    tmp_path: Path, blobs: BlobStore, fresh: tuple[BlobStore, Index]
) -> None:
    digest = store_image(blobs, [BASE, APP], "zstd")
    out = tmp_path / "out.tar"
    write_oci_archive(blobs, [("app:1", digest)], out)
    assert load_archive(out, *fresh) == [LoadedImage("app:1", digest)]
    assert fresh[1].get_tag("app:1") == digest


def test_oci_archive_index_names_each_tag_with_both_annotations(
    tmp_path: Path, blobs: BlobStore
) -> None:
    digest = store_image(blobs, [BASE])
    out = tmp_path / "out.tar"
    write_oci_archive(blobs, [("app:1", digest), ("ghcr.io/me/app:2", digest)], out)
    index = json.loads(read_member(out, "index.json"))
    assert [m["annotations"] for m in index["manifests"]] == [
        {
            "io.containerd.image.name": "docker.io/library/app:1",
            "org.opencontainers.image.ref.name": "app:1",
        },
        {
            "io.containerd.image.name": "ghcr.io/me/app:2",
            "org.opencontainers.image.ref.name": "ghcr.io/me/app:2",
        },
    ]
    assert {m["digest"] for m in index["manifests"]} == {str(digest)}
    assert json.loads(read_member(out, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}


def test_archives_are_deterministic_sorted_with_numeric_ids_and_zero_mtime(
    tmp_path: Path, blobs: BlobStore
) -> None:
    digest = store_image(blobs, [BASE, APP])
    write_docker_archive(blobs, [("app:1", digest)], tmp_path / "a.tar")
    write_docker_archive(blobs, [("app:1", digest)], tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    infos = list(members(tmp_path / "a.tar").values())
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname) for i in infos} == {(0, 0, 0, "", "")}
    assert [i.name for i in infos][:2] == ["blobs", "blobs/sha256"]


def test_docker_archive_has_manifest_json_with_repo_tags_for_docker_load(
    tmp_path: Path, blobs: BlobStore
) -> None:
    digest = store_image(blobs, [BASE, APP], "gzip")
    out = tmp_path / "out.tar"
    write_docker_archive(blobs, [("app:1", digest), ("app:latest", digest)], out)
    [entry] = json.loads(read_member(out, "manifest.json"))
    assert entry["RepoTags"] == ["app:1", "app:latest"]
    config = json.loads(read_member(out, entry["Config"]))
    assert config["config"]["Cmd"] == ["sh"]
    assert len(entry["Layers"]) == 2
    assert all(name in members(out) for name in entry["Layers"])
    assert {"index.json", "oci-layout"} <= members(out).keys()


def test_docker_archive_converts_zstd_layers_to_plain_tars_once(
    tmp_path: Path, blobs: BlobStore, fresh: tuple[BlobStore, Index]
) -> None:
    digest = store_image(blobs, [BASE, APP], "zstd")
    out = tmp_path / "out.tar"
    write_docker_archive(blobs, [("app:1", digest)], out)
    [entry] = json.loads(read_member(out, "manifest.json"))
    assert [read_member(out, name) for name in entry["Layers"]] == [BASE, APP]
    assert blobs.has(sha256_bytes(APP))  # kept, so the next save does no work
    # the archive's OCI side points at the plain layers too, and loads cleanly
    [loaded] = load_archive(out, *fresh)
    assert loaded.name == "app:1" and loaded.digest != digest


def test_untagged_image_has_no_annotations_and_null_repo_tags(
    tmp_path: Path, blobs: BlobStore
) -> None:
    digest = store_image(blobs, [BASE])
    out = tmp_path / "out.tar"
    write_docker_archive(blobs, [("", digest)], out)
    assert json.loads(read_member(out, "manifest.json"))[0]["RepoTags"] is None
    assert "annotations" not in json.loads(read_member(out, "index.json"))["manifests"][0]


def test_failed_save_leaves_no_file_behind(tmp_path: Path, blobs: BlobStore) -> None:
    digest = store_image(blobs, [BASE, APP])
    blobs.remove(sha256_bytes(APP))
    out = tmp_path / "out.tar"
    with pytest.raises(BuildError) as err:
        write_oci_archive(blobs, [("app:1", digest)], out)
    assert err.value.hint
    assert os.listdir(tmp_path) == ["store"]


def test_corrupt_blob_fails_the_save_and_keeps_the_old_file(
    tmp_path: Path, blobs: BlobStore
) -> None:
    digest = store_image(blobs, [BASE, APP])
    out = tmp_path / "out.tar"
    out.write_bytes(b"previous save")
    blob = blobs.path(sha256_bytes(APP))
    blob.write_bytes(blob.read_bytes().replace(b"echo hi", b"echo HI"))
    with pytest.raises(BuildError, match="expected sha256"):
        write_oci_archive(blobs, [("app:1", digest)], out)
    assert out.read_bytes() == b"previous save"
    assert sorted(os.listdir(tmp_path)) == ["out.tar", "store"]


def test_saving_an_unknown_image_is_an_error(tmp_path: Path, blobs: BlobStore) -> None:
    with pytest.raises(BuildError, match="not in the store"):
        write_oci_archive(blobs, [("x:1", sha256_bytes(b"nothing"))], tmp_path / "o.tar")


def test_saving_into_a_missing_directory_is_an_error(tmp_path: Path, blobs: BlobStore) -> None:
    digest = store_image(blobs, [BASE])
    with pytest.raises(BuildError, match="cannot write"):
        write_oci_archive(blobs, [("x:1", digest)], tmp_path / "no" / "o.tar")


def test_rootfs_is_the_flattened_image(tmp_path: Path, blobs: BlobStore) -> None:
    digest = store_image(blobs, [BASE, APP], "gzip")
    dest = tmp_path / "out" / "rootfs"
    write_rootfs(blobs, digest, dest)
    assert (dest / "etc/motd").read_text() == "app\n"
    assert (dest / "bin/sh").read_bytes() == b"#!fake shell\n"
    assert not [p for p in dest.parent.iterdir() if p.name != "rootfs"]  # no temp dir left


def test_rootfs_applies_whiteouts_of_later_layers(tmp_path: Path, blobs: BlobStore) -> None:
    remove = tar_of([("etc", None), ("etc/.wh.motd", b"")])
    digest = store_image(blobs, [BASE, remove])
    write_rootfs(blobs, digest, tmp_path / "rootfs")
    assert not (tmp_path / "rootfs/etc/motd").exists()
    assert (tmp_path / "rootfs/etc").is_dir()


def test_rootfs_into_existing_dir_overwrites_same_names_and_keeps_others(
    tmp_path: Path, blobs: BlobStore
) -> None:
    dest = tmp_path / "rootfs"
    (dest / "etc").mkdir(parents=True)
    (dest / "etc/motd").write_text("old\n")
    (dest / "etc/mine").write_text("keep me\n")
    (tmp_path / "elsewhere").mkdir()
    (dest / "bin").symlink_to(tmp_path / "elsewhere")  # must be replaced, not followed
    write_rootfs(blobs, store_image(blobs, [BASE, APP]), dest)
    assert (dest / "etc/motd").read_text() == "app\n"
    assert (dest / "etc/mine").read_text() == "keep me\n"
    assert (dest / "bin").is_dir() and not (dest / "bin").is_symlink()
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert sorted(p.name for p in dest.iterdir()) == ["app", "bin", "etc"]


def test_rootfs_over_a_file_is_an_error(tmp_path: Path, blobs: BlobStore) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match="not a directory"):
        write_rootfs(blobs, store_image(blobs, [BASE]), tmp_path / "file")


def test_zstd_layer_conversion_checks_the_diff_id(tmp_path: Path, blobs: BlobStore) -> None:
    wrong = zstandard.ZstdCompressor().compress(APP)
    descriptor = Descriptor(MEDIA_OCI_LAYER_ZSTD, blobs.put_bytes(wrong), len(wrong))
    config = ImageConfig(diff_ids=(sha256_bytes(BASE),))  # claims BASE, holds APP
    digest = write_image(blobs, config, [descriptor]).digest
    with pytest.raises(BuildError, match="expected sha256"):
        write_docker_archive(blobs, [("x:1", digest)], tmp_path / "o.tar")
    assert not (tmp_path / "o.tar").exists()


def test_tar_entries_are_readable_by_tarfile_streaming(tmp_path: Path, blobs: BlobStore) -> None:
    out = tmp_path / "o.tar"
    write_oci_archive(blobs, [("x:1", store_image(blobs, [BASE]))], out)
    with tarfile.open(fileobj=io.BytesIO(out.read_bytes()), mode="r|") as tar:
        assert sum(1 for _ in tar) == 7  # 2 dirs, manifest, config, layer, index, layout
