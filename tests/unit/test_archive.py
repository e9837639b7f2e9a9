"""builder.images.load: loading docker-archives and OCI archives into the store."""

from __future__ import annotations

import gzip
import json
import lzma
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from builder.errors import BuildError
from builder.images.load import LoadedImage, load_archive
from cache.digest import Digest
from cache.images import read_image
from cache.index import Index
from cache.oci import MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP
from cache.store import BlobStore
from tests.archive_samples import (
    CONTAINERD,
    OCI_INDEX,
    OCI_MANIFEST,
    REF,
    Layout,
    config,
    descriptor,
    docker25,
    docker_classic,
    layer,
    sha,
    tar_of,
)

Store = tuple[BlobStore, Index]
BASE = layer({"bin/sh": b"#!fake shell\n", "etc/passwd": b"root:x:0:0::/root:/bin/sh\n"})
APP = layer({"app/run": b"echo hi\n"})


@pytest.fixture
def store(store_root: Path) -> Iterator[Store]:
    index = Index(store_root)
    yield BlobStore(store_root), index
    index.close()


def load(tmp_path: Path, data: bytes, store: Store) -> list[LoadedImage]:
    path = tmp_path / "image.tar"
    path.write_bytes(data)
    return load_archive(path, *store)


def test_classic_docker_archive_is_tagged_with_its_repo_tags(tmp_path: Path, store: Store) -> None:
    data = docker_classic([(["busybox:latest", "docker.io/library/busybox:1"], [BASE, APP])])
    loaded = load(tmp_path, data, store)
    blobs, index = store
    assert [i.name for i in loaded] == ["busybox:latest", "busybox:1"]
    assert loaded[0].digest == loaded[1].digest
    assert index.get_tag("busybox:latest") == loaded[0].digest
    image = read_image(blobs, loaded[0].digest)
    assert image.config.config.cmd == ("image0",)


def test_classic_docker_layers_are_stored_uncompressed_under_their_diff_id(
    tmp_path: Path, store: Store
) -> None:
    loaded = load(tmp_path, docker_classic([(["a:1"], [BASE, APP])]), store)
    image = read_image(store[0], loaded[0].digest)
    assert [str(d.digest) for d in image.manifest.layers] == [sha(BASE), sha(APP)]
    assert {d.media_type for d in image.manifest.layers} == {MEDIA_OCI_LAYER}
    assert store[0].read_bytes(image.manifest.layers[1].digest) == APP


def test_classic_docker_gzip_layer_keeps_gzip_and_is_checked_against_diff_id(
    tmp_path: Path, store: Store
) -> None:
    loaded = load(tmp_path, docker_classic([(["a:1"], [BASE])], how="gzip"), store)
    image = read_image(store[0], loaded[0].digest)
    assert image.manifest.layers[0].media_type == MEDIA_OCI_LAYER_GZIP
    assert image.config.diff_ids == (Digest.parse(sha(BASE)),)


def test_classic_docker_shared_layer_symlink_is_followed(tmp_path: Path, store: Store) -> None:
    data = docker_classic([(["a:1"], [BASE]), (["b:1"], [BASE, APP])])
    loaded = load(tmp_path, data, store)
    second = read_image(store[0], loaded[1].digest)
    assert str(second.manifest.layers[0].digest) == sha(BASE)


def test_classic_docker_untagged_image_loads_without_name(tmp_path: Path, store: Store) -> None:
    loaded = load(tmp_path, docker_classic([([], [BASE])]), store)
    assert loaded == [LoadedImage(None, loaded[0].digest)]
    assert store[1].tags() == []


def test_oci_archive_keeps_manifest_digest_and_names_from_annotations(
    tmp_path: Path, store: Store
) -> None:
    layout = Layout()
    manifest = layout.image([BASE, APP], how="zstd")
    layout.tag(manifest, {REF: "busybox:latest"})
    layout.tag(manifest, {CONTAINERD: "docker.io/library/app:2", REF: "2"})
    loaded = load(tmp_path, layout.tar(), store)
    assert loaded == [
        LoadedImage("busybox:latest", Digest.parse(sha(manifest))),
        LoadedImage("app:2", Digest.parse(sha(manifest))),
    ]
    assert store[0].read_bytes(loaded[0].digest) == manifest


def test_oci_ref_name_that_is_only_a_tag_names_no_image(tmp_path: Path, store: Store) -> None:
    layout = Layout()
    layout.tag(layout.image([BASE]), {REF: "v1.0"})
    loaded = load(tmp_path, layout.tar(), store)
    assert loaded[0].name is None
    assert store[1].tags() == []


def test_oci_nested_index_picks_host_platform_and_skips_absent_and_attestations(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    layout = Layout()
    amd64 = layout.image([BASE])
    arm64 = json.dumps({"schemaVersion": 2, "mediaType": "x", "layers": []}).encode()
    attestation = layout.image([APP], arch="unknown")
    platforms = [
        descriptor(OCI_MANIFEST, arm64,
                   platform={"os": "linux", "architecture": "arm64"}),  # blob not in archive
        descriptor(OCI_MANIFEST, attestation,
                   platform={"os": "unknown", "architecture": "unknown"},
                   annotations={"vnd.docker.reference.type": "attestation-manifest"}),
        descriptor(OCI_MANIFEST, amd64,
                   platform={"os": "linux", "architecture": "amd64"}),
    ]  # fmt: skip
    nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platforms})
    layout.add(nested.encode())
    layout.tag(nested.encode(), {CONTAINERD: "docker.io/library/multi:1"}, OCI_INDEX)
    loaded = load(tmp_path, layout.tar(), store)
    assert loaded == [LoadedImage("multi:1", Digest.parse(sha(amd64)))]


def test_oci_nested_index_without_host_platform_is_an_error(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    layout = Layout()
    arm = layout.image([BASE], arch="arm64")
    plat = {"os": "linux", "architecture": "arm64"}
    nested = json.dumps(
        {"schemaVersion": 2, "manifests": [descriptor(OCI_MANIFEST, arm, platform=plat)]}
    ).encode()
    layout.add(nested)
    layout.tag(nested, {REF: "x:1"}, OCI_INDEX)
    with pytest.raises(BuildError, match=r"no image for linux/amd64.*linux/arm64"):
        load(tmp_path, layout.tar(), store)


def test_docker25_archive_is_read_as_oci_with_names_from_manifest_json(
    tmp_path: Path, store: Store
) -> None:
    layout = Layout()
    manifest = layout.image([BASE, APP])
    layout.tag(manifest, {REF: "latest"})  # docker 25 writes only the tag here...
    cfg = config([BASE, APP])
    entry = {
        "Config": f"blobs/sha256/{sha(cfg)[7:]}",
        "RepoTags": ["app:latest"],  # ...and the name in manifest.json
        "Layers": [f"blobs/sha256/{sha(d)[7:]}" for d in (BASE, APP)],
    }
    loaded = load(tmp_path, docker25(layout, [entry]), store)
    assert loaded == [LoadedImage("app:latest", Digest.parse(sha(manifest)))]


def test_docker25_archive_falls_back_to_manifest_json_when_index_is_broken(
    tmp_path: Path, store: Store
) -> None:
    layout = Layout()
    manifest = layout.image([BASE])
    layout.tag(manifest, {REF: "latest"})
    del layout.blobs[sha(manifest)[7:]]
    cfg = config([BASE])
    entry = {
        "Config": f"blobs/sha256/{sha(cfg)[7:]}",
        "RepoTags": ["app:1"],
        "Layers": [f"blobs/sha256/{sha(BASE)[7:]}"],
    }
    loaded = load(tmp_path, docker25(layout, [entry]), store)
    assert [i.name for i in loaded] == ["app:1"]


@pytest.mark.parametrize(
    "squeeze",
    [
        lambda d: gzip.compress(d, mtime=0),
        lambda d: lzma.compress(d),
        lambda d: zstandard.ZstdCompressor().compress(d),
    ],
    ids=["gzip", "xz", "zstd"],
)
def test_compressed_archive_file_is_loaded(
    tmp_path: Path, store: Store, squeeze: Callable[[bytes], bytes]
) -> None:
    loaded = load(tmp_path, squeeze(docker_classic([(["a:1"], [BASE])])), store)
    assert [i.name for i in loaded] == ["a:1"]


def test_members_with_dot_slash_prefix_are_found(tmp_path: Path, store: Store) -> None:
    layout = Layout()
    layout.tag(layout.image([BASE]), {REF: "dot:1"})
    members = [(f"./{name}", data) for name, data in layout.members()]
    assert [i.name for i in load(tmp_path, tar_of(members), store)] == ["dot:1"]


def test_random_bytes_are_not_a_tar(tmp_path: Path, store: Store) -> None:
    with pytest.raises(BuildError, match="not a tar archive") as err:
        load(tmp_path, bytes(range(256)) * 8, store)
    assert err.value.hint is not None and "docker-archive" in err.value.hint


def test_truncated_archive_is_an_error_and_tags_nothing(tmp_path: Path, store: Store) -> None:
    data = docker_classic([(["a:1"], [BASE, APP])])
    with pytest.raises(BuildError, match=r"truncated or corrupt|no file") as err:
        load(tmp_path, data[: len(data) // 2 + 100], store)
    assert err.value.hint
    assert store[1].tags() == []


def test_tar_without_manifest_or_index_is_an_unknown_format(tmp_path: Path, store: Store) -> None:
    with pytest.raises(BuildError, match=r"neither manifest\.json nor index\.json") as err:
        load(tmp_path, tar_of([("hello.txt", b"hi")]), store)
    assert err.value.hint == "expected a docker-archive (docker save) or OCI archive"


def test_blob_whose_content_does_not_match_its_name_is_rejected(
    tmp_path: Path, store: Store
) -> None:
    layout = Layout()
    manifest = layout.image([BASE])
    layout.tag(manifest, {REF: "bad:1"})
    layout.blobs[sha(BASE)[7:]] = BASE + b"tampered"
    with pytest.raises(BuildError, match="expected sha256:") as err:
        load(tmp_path, layout.tar(), store)
    assert "corrupt" in (err.value.hint or "")
    assert store[1].tags() == []


def test_missing_layer_blob_is_an_error_and_tags_nothing(tmp_path: Path, store: Store) -> None:
    layout = Layout()
    good = layout.image([APP])
    bad = layout.image([BASE])
    layout.tag(good, {REF: "good:1"})
    layout.tag(bad, {REF: "bad:1"})
    del layout.blobs[sha(BASE)[7:]]
    with pytest.raises(BuildError, match="no blob for layer") as err:
        load(tmp_path, layout.tar(), store)
    assert "incomplete" in (err.value.hint or "")
    assert store[1].tags() == []  # not even the good image's


def test_docker_layer_not_matching_diff_id_is_rejected(tmp_path: Path, store: Store) -> None:
    data = docker_classic([(["a:1"], [BASE])])
    tampered = data.replace(b"#!fake shell", b"#!evil shell")
    with pytest.raises(BuildError, match="diff_id"):
        load(tmp_path, tampered, store)
    assert store[1].tags() == []


def test_docker_config_not_matching_its_file_name_is_rejected(tmp_path: Path, store: Store) -> None:
    data = docker_classic([(["a:1"], [BASE])]).replace(b'"Cmd": ["image0"]', b'"Cmd": ["imageX"]')
    with pytest.raises(BuildError, match="config"):
        load(tmp_path, data, store)


def test_descriptor_size_must_match_blob(tmp_path: Path, store: Store) -> None:
    layout = Layout()
    manifest = json.loads(layout.image([BASE]))
    manifest["layers"][0]["size"] += 1
    data = json.dumps(manifest).encode()
    layout.add(data)
    layout.tag(data, {REF: "size:1"})
    with pytest.raises(BuildError, match="descriptor says"):
        load(tmp_path, layout.tar(), store)


def test_invalid_name_in_archive_is_an_error(tmp_path: Path, store: Store) -> None:
    with pytest.raises(BuildError, match="not a valid image name"):
        load(tmp_path, docker_classic([(["Not Valid!"], [BASE])]), store)


def test_missing_file_is_a_build_error(tmp_path: Path, store: Store) -> None:
    with pytest.raises(BuildError, match="cannot read"):
        load_archive(tmp_path / "nope.tar", *store)
