"""Image archives against the real busybox fixtures and independent tools (skopeo, umoci).

The fixtures come from fixtures/make_base.py (no pybuild code); skopeo converts them
into further shapes (docker-archive, OCI with zstd) that our loader must take, and
checks that what we save is readable by something other than ourselves.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.images.load import LoadedImage, load_archive
from builder.images.save import write_docker_archive, write_oci_archive, write_rootfs
from cache.images import read_image
from cache.index import Index
from cache.layers import Compression
from cache.store import BlobStore
from tests.archive_samples import make_base_module

needs_busybox = pytest.mark.skipif(
    not Path("/bin/busybox").is_file(), reason="needs /bin/busybox: apt-get install busybox-static"
)
needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
pytestmark = needs_busybox

Store = tuple[BlobStore, Index]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The busybox base in both formats make_base writes."""
    make_base = make_base_module().make_base
    out = tmp_path_factory.mktemp("base")
    return {
        fmt: make_base(out / f"busybox-{fmt}.tar", fmt, "busybox:latest")
        for fmt in ("docker", "oci")
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield from _store(tmp_path / "store")


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Store]:
    yield from _store(tmp_path / "other")


def _store(root: Path) -> Iterator[Store]:
    root.mkdir()
    index = Index(root)
    yield BlobStore(root), index
    index.close()


def skopeo(*args: str) -> str:
    done = subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_base_output_is_deterministic(base: dict[str, Path], tmp_path: Path) -> None:
    make_base = make_base_module().make_base
    for fmt, first in base.items():
        again = make_base(tmp_path / f"again-{fmt}.tar", fmt, "busybox:latest")
        assert again.read_bytes() == first.read_bytes()


def test_both_fixture_formats_load_as_busybox_latest_with_the_same_layer(
    base: dict[str, Path], store: Store
) -> None:
    docker = load_archive(base["docker"], *store)
    oci = load_archive(base["oci"], *store)
    assert [i.name for i in docker] == [i.name for i in oci] == ["busybox:latest"]
    images = [read_image(store[0], i.digest) for i in (docker[0], oci[0])]
    assert images[0].config.diff_ids == images[1].config.diff_ids
    assert images[0].config.config.cmd == images[1].config.config.cmd == ("sh",)
    assert store[1].get_tag("busybox:latest") == oci[0].digest  # the later load wins


@pytest.mark.parametrize("fmt", ["docker", "oci"])
@pytest.mark.requires_root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to keep file owners and chroot")
def test_loaded_base_flattens_to_a_working_busybox_rootfs(
    base: dict[str, Path], store: Store, tmp_path: Path, fmt: str
) -> None:
    [loaded] = load_archive(base[fmt], *store)
    rootfs = tmp_path / "rootfs"
    write_rootfs(store[0], loaded.digest, rootfs)
    assert os.stat(rootfs / "bin/sh").st_ino == os.stat(rootfs / "bin/busybox").st_ino
    assert os.stat(rootfs / "usr/bin/env").st_ino == os.stat(rootfs / "bin/busybox").st_ino
    assert stat.S_IMODE(os.stat(rootfs / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(rootfs / "root").st_mode) == 0o700
    home = os.stat(rootfs / "home/app")
    assert (home.st_uid, home.st_gid) == (1000, 1000)
    assert "app:x:1000:1000" in (rootfs / "etc/passwd").read_text()
    done = subprocess.run(
        ["chroot", str(rootfs), "/bin/sh", "-c", "echo hello; id -un"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert done.stdout == "hello\nroot\n"


def test_oci_round_trip_keeps_digests_and_tags(
    base: dict[str, Path], store: Store, other: Store, tmp_path: Path
) -> None:
    [loaded] = load_archive(base["oci"], *store)
    out = tmp_path / "saved.tar"
    write_oci_archive(store[0], [("busybox:latest", loaded.digest), ("bb:1", loaded.digest)], out)
    assert load_archive(out, *other) == [
        LoadedImage("busybox:latest", loaded.digest),
        LoadedImage("bb:1", loaded.digest),
    ]
    # the fixture's own manifest digest survived too: nothing was rewritten
    index = json.loads(_member(base["oci"], "index.json"))
    assert index["manifests"][0]["digest"] == str(loaded.digest)


def test_docker_round_trip_keeps_name_and_digest(
    base: dict[str, Path], store: Store, other: Store, tmp_path: Path
) -> None:
    [loaded] = load_archive(base["docker"], *store)
    out = tmp_path / "saved.tar"
    write_docker_archive(store[0], [("busybox:latest", loaded.digest)], out)
    assert load_archive(out, *other) == [LoadedImage("busybox:latest", loaded.digest)]


@needs_skopeo
@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_skopeo_reads_the_fixtures(base: dict[str, Path], fmt: str) -> None:
    transport = {"docker": "docker-archive", "oci": "oci-archive"}[fmt]
    info = json.loads(skopeo("inspect", f"{transport}:{base[fmt]}"))
    assert info["Architecture"] == "amd64" and len(info["Layers"]) == 1


@needs_skopeo
def test_skopeo_reads_and_copies_our_archives(
    base: dict[str, Path], store: Store, tmp_path: Path
) -> None:
    [loaded] = load_archive(base["oci"], *store)
    oci, docker = tmp_path / "ours-oci.tar", tmp_path / "ours-docker.tar"
    write_oci_archive(store[0], [("busybox:latest", loaded.digest)], oci)
    write_docker_archive(store[0], [("busybox:latest", loaded.digest)], docker)
    info = json.loads(skopeo("inspect", f"oci-archive:{oci}:busybox:latest"))
    assert info["Digest"] == str(loaded.digest)
    # docker-archive:FILE:name:tag finds the image through manifest.json's RepoTags
    info = json.loads(skopeo("inspect", f"docker-archive:{docker}:busybox:latest"))
    diff_ids = read_image(store[0], loaded.digest).config.diff_ids
    assert info["Layers"] == [str(d) for d in diff_ids]
    # a full copy makes skopeo read and verify every blob
    skopeo("copy", f"docker-archive:{docker}", f"dir:{tmp_path / 'copy1'}")
    skopeo("copy", f"oci-archive:{oci}:busybox:latest", f"dir:{tmp_path / 'copy2'}")


@needs_skopeo
@pytest.mark.parametrize(
    ("source", "dest_ref", "extra", "expect"),
    [
        ("oci", "docker-archive:{out}:busybox:conv", (), "busybox:conv"),
        ("docker", "oci-archive:{out}:busybox:conv", (), "busybox:conv"),
        ("docker", "oci-archive:{out}:conv", (), None),  # a bare tag names no image
        (
            "docker",
            "oci-archive:{out}:zstd:1",
            ("--dest-compress", "--dest-compress-format", "zstd"),
            "zstd:1",
        ),
    ],
    ids=["to-docker", "to-oci", "to-oci-bare-tag", "to-oci-zstd"],
)
def test_loader_takes_archives_skopeo_converted(
    base: dict[str, Path],
    store: Store,
    tmp_path: Path,
    source: str,
    dest_ref: str,
    extra: tuple[str, ...],
    expect: str | None,
) -> None:
    out = tmp_path / "converted.tar"
    transport = {"docker": "docker-archive", "oci": "oci-archive"}[source]
    skopeo("copy", *extra, f"{transport}:{base[source]}", dest_ref.format(out=out))
    [loaded] = load_archive(out, *store)
    assert loaded.name == expect
    image = read_image(store[0], loaded.digest)
    assert image.config.config.cmd == ("sh",)


@needs_skopeo
def test_zstd_image_saved_as_docker_archive_is_readable_by_skopeo(
    base: dict[str, Path], store: Store, tmp_path: Path
) -> None:
    zstd = tmp_path / "zstd.tar"
    skopeo(
        "copy", "--dest-compress", "--dest-compress-format", "zstd",
        f"oci-archive:{base['oci']}", f"oci-archive:{zstd}:zstd:1",
    )  # fmt: skip
    [loaded] = load_archive(zstd, *store)
    out = tmp_path / "docker.tar"
    write_docker_archive(store[0], [("zstd:1", loaded.digest)], out)
    [entry] = json.loads(_member(out, "manifest.json"))
    assert _member(out, entry["Layers"][0])[:2] == b"\x1f\x8b"  # gzip now, as docker reads
    skopeo("copy", f"docker-archive:{out}", f"dir:{tmp_path / 'copy'}")


@needs_skopeo
@needs_umoci
def test_umoci_unpacks_a_zstd_image_exported_as_gzip(
    base: dict[str, Path], store: Store, tmp_path: Path
) -> None:
    zstd = tmp_path / "zstd.tar"
    skopeo(
        "copy", "--dest-compress", "--dest-compress-format", "zstd",
        f"oci-archive:{base['oci']}", f"oci-archive:{zstd}:zstd:1",
    )  # fmt: skip
    [loaded] = load_archive(zstd, *store)
    out = tmp_path / "gzip.tar"
    write_oci_archive(store[0], [("zstd:1", loaded.digest)], out, compression=Compression.GZIP)
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(out) as tar:
        tar.extractall(layout, filter="data")
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    done = subprocess.run(
        ["umoci", "unpack", *rootless, "--image", f"{layout}:zstd:1", str(tmp_path / "b")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b/rootfs/bin/busybox").is_file()


@needs_umoci
def test_umoci_unpacks_our_oci_archive(base: dict[str, Path], store: Store, tmp_path: Path) -> None:
    [loaded] = load_archive(base["docker"], *store)
    out = tmp_path / "ours.tar"
    write_oci_archive(store[0], [("busybox:latest", loaded.digest)], out)
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(out) as tar:
        tar.extractall(layout, filter="data")
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    done = subprocess.run(
        ["umoci", "unpack", *rootless, "--image", f"{layout}:busybox:latest", str(tmp_path / "b")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b/rootfs/bin/busybox").is_file()
    config = json.loads((tmp_path / "b/config.json").read_text())
    assert config["process"]["args"] == ["sh"]


def _member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()
