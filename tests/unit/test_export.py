"""builder.images.save: OCI and docker archives, and the flattened root filesystem."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from builder.errors import BuildError
from builder.images.load import LoadedImage, load_archive
from builder.images.save import write_docker_archive, write_oci_archive, write_rootfs
from cache.digest import Digest, sha256_bytes
from cache.images import write_image
from cache.index import Index
from cache.layers import Compression
from cache.oci import (
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_ZSTD,
    ContainerConfig,
    Descriptor,
    ImageConfig,
)
from cache.store import BlobStore
from tests.archive_samples import compress, layer, tar_of
from tests.oci_schema import check_layout

BASE = layer({"bin/sh": b"#!fake shell\n", "etc/motd": b"base\n"})
APP = layer({"app/run": b"echo hi\n", "etc/motd": b"app\n"})
STORED = {"none": Compression.NONE, "gzip": Compression.GZIP, "zstd": Compression.ZSTD}


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


def zstd_decompress(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


def unpack(archive: Path, dest: Path) -> Path:
    dest.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="tar")
    return dest


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


def layer_blobs(archive: Path) -> list[tuple[str, bytes]]:
    """(mediaType, blob bytes) of each layer of the archive's first image."""
    index = json.loads(read_member(archive, "index.json"))
    manifest_name = "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(read_member(archive, manifest_name))
    return [
        (d["mediaType"], read_member(archive, "blobs/sha256/" + d["digest"].split(":")[1]))
        for d in manifest["layers"]
    ]


def test_docker_archive_keeps_no_zstd_layers_by_default_they_become_gzip(
    tmp_path: Path, blobs: BlobStore, fresh: tuple[BlobStore, Index]
) -> None:
    digest = store_image(blobs, [BASE, APP], "zstd")
    out = tmp_path / "out.tar"
    write_docker_archive(blobs, [("app:1", digest)], out)
    [entry] = json.loads(read_member(out, "manifest.json"))
    data = [read_member(out, name) for name in entry["Layers"]]
    assert all(d.startswith(b"\x1f\x8b") for d in data)
    assert [gzip.decompress(d) for d in data] == [BASE, APP]
    assert {media for media, _ in layer_blobs(out)} == {MEDIA_OCI_LAYER_GZIP}
    # the archive's OCI side points at the gzip layers too, and loads cleanly
    [loaded] = load_archive(out, *fresh)
    assert loaded.name == "app:1" and loaded.digest != digest


def test_docker_archive_default_keeps_plain_and_gzip_layers_as_stored(
    tmp_path: Path, blobs: BlobStore, fresh: tuple[BlobStore, Index]
) -> None:
    digest = store_image(blobs, [BASE, APP], "none")
    out = tmp_path / "out.tar"
    write_docker_archive(blobs, [("app:1", digest)], out)
    assert [data for _, data in layer_blobs(out)] == [BASE, APP]
    [loaded] = load_archive(out, *fresh)
    assert loaded.digest == digest


@pytest.mark.parametrize(
    ("target", "media", "decode"),
    [
        (Compression.GZIP, MEDIA_OCI_LAYER_GZIP, gzip.decompress),
        (Compression.ZSTD, MEDIA_OCI_LAYER_ZSTD, zstd_decompress),
        (Compression.NONE, MEDIA_OCI_LAYER, lambda data: data),
    ],
)
@pytest.mark.parametrize("stored", ["none", "gzip", "zstd"])
def test_oci_archive_compression_gives_every_layer_that_compression(
    tmp_path: Path,
    blobs: BlobStore,
    fresh: tuple[BlobStore, Index],
    target: Compression,
    media: str,
    decode: Callable[[bytes], bytes],
    stored: str,
) -> None:
    digest = store_image(blobs, [BASE, APP], stored)
    out = tmp_path / "out.tar"
    write_oci_archive(blobs, [("app:1", digest)], out, compression=target)
    layers = layer_blobs(out)
    assert [m for m, _ in layers] == [media, media]
    assert [decode(data) for _, data in layers] == [BASE, APP]
    [loaded] = load_archive(out, *fresh)
    # same compression: the manifest is copied; otherwise the image gets a new one
    same = STORED[stored] is target
    assert (loaded.digest == digest) == same
    check_layout(unpack(out, tmp_path / "layout"))


def test_layer_already_in_the_target_compression_is_copied_byte_for_byte(
    tmp_path: Path, blobs: BlobStore
) -> None:
    stored = compress(APP, "gzip")  # stdlib gzip: not what our encoder would write
    digest = store_image(blobs, [BASE, APP], "gzip")
    out = tmp_path / "out.tar"
    write_docker_archive(blobs, [("app:1", digest)], out, compression=Compression.GZIP)
    assert layer_blobs(out)[1] == (MEDIA_OCI_LAYER_GZIP, stored)


def test_docker_layer_media_types_become_oci_ones_when_compression_is_given(
    tmp_path: Path, blobs: BlobStore
) -> None:
    blob = compress(BASE, "gzip")
    docker_typed = Descriptor(MEDIA_DOCKER_LAYER_GZIP, blobs.put_bytes(blob), len(blob))
    config = ImageConfig(diff_ids=(sha256_bytes(BASE),))
    digest = write_image(blobs, config, [docker_typed]).digest
    kept, gzipped = tmp_path / "kept.tar", tmp_path / "gzip.tar"
    write_oci_archive(blobs, [("x:1", digest)], kept)
    write_oci_archive(blobs, [("x:1", digest)], gzipped, compression=Compression.GZIP)
    assert layer_blobs(kept) == [(MEDIA_DOCKER_LAYER_GZIP, blob)]  # as stored
    assert layer_blobs(gzipped) == [(MEDIA_OCI_LAYER_GZIP, blob)]  # same bytes, OCI type


def test_docker_archive_can_be_asked_for_zstd(tmp_path: Path, blobs: BlobStore) -> None:
    digest = store_image(blobs, [BASE], "gzip")
    out = tmp_path / "out.tar"
    write_docker_archive(blobs, [("app:1", digest)], out, compression=Compression.ZSTD)
    [(media, data)] = layer_blobs(out)
    assert media == MEDIA_OCI_LAYER_ZSTD and zstd_decompress(data) == BASE


def test_converted_export_is_deterministic(tmp_path: Path) -> None:
    outs = []
    for i in range(2):
        root = tmp_path / f"store{i}"
        root.mkdir()
        blobs = BlobStore(root)
        outs.append(tmp_path / f"out{i}.tar")
        digest = store_image(blobs, [BASE, APP], "zstd")
        write_oci_archive(blobs, [("app:1", digest)], outs[-1], compression=Compression.GZIP)
    assert outs[0].read_bytes() == outs[1].read_bytes()


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


def test_layer_conversion_checks_the_diff_id(tmp_path: Path, blobs: BlobStore) -> None:
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


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    synced: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr("builder.images.save.os.fsync", counting)
    return synced


def test_an_archive_replacing_a_file_is_fsynced_before_it_takes_its_place(
    tmp_path: Path, blobs: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = store_image(blobs, [BASE], "zstd")
    out = tmp_path / "out.tar"
    out.write_bytes(b"the user's old archive")
    synced = _count_fsyncs(monkeypatch)
    write_oci_archive(blobs, [("app:1", digest)], out)
    assert len(synced) == 1
    assert "index.json" in members(out)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_new_archive_is_left_to_writeback_as_docker_save_leaves_it(
    tmp_path: Path, blobs: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = store_image(blobs, [BASE], "zstd")
    out = tmp_path / "new.tar"
    synced = _count_fsyncs(monkeypatch)
    write_oci_archive(blobs, [("app:1", digest)], out)
    assert synced == []
    assert "index.json" in members(out)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
