"""Built images as other tools see them: layer tars, OCI archives, docker archives."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.integration.clihelp import REPO, Pybuild, write_context
from tests.oci_schema import check_layout

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

WHITEOUT_DOCKERFILE = """\
FROM busybox
RUN rm /bin/ls && rm -rf /home/app && mkdir -p /home/app && echo new > /home/app/only \\
 && echo data > /h1 && ln /h1 /h2 && mkfifo /fifo && chmod 4755 /h1 && mkdir -m 1777 /sticky
"""


def oci_layout(pybuild: Pybuild, ctx: Path, tmp_path: Path, *args: str) -> Path:
    archive = tmp_path / "image.oci.tar"
    pybuild.build(ctx, "-t", "out:1", "-o", f"type=oci,dest={archive}", *args)
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="tar")
    return layout


def last_layer_members(layout: Path) -> dict[str, tarfile.TarInfo]:
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    layer = manifest["layers"][-1]
    data = (layout / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()
    if layer["mediaType"].endswith("+zstd"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def test_run_changes_become_whiteouts_hardlinks_and_modes(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, WHITEOUT_DOCKERFILE)
    members = last_layer_members(oci_layout(pybuild, ctx, tmp_path))
    assert "bin/.wh.ls" in members
    assert "home/app/.wh..wh..opq" in members
    assert members["home/app/only"].isfile()
    links = [m for m in members.values() if m.islnk()]
    assert len(links) == 1 and {links[0].name, links[0].linkname} == {"h1", "h2"}
    assert members["h1"].mode & 0o4000 or members["h2"].mode & 0o4000
    assert members["fifo"].isfifo()
    assert members["sticky"].mode & 0o1777 == 0o1777
    assert all(m.uname == "" and m.gname == "" for m in members.values())


def test_whiteouts_apply_in_exported_rootfs(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, WHITEOUT_DOCKERFILE)
    root = tmp_path / "rootfs"
    pybuild.build(ctx, "-o", f"type=local,dest={root}")
    assert not (root / "bin" / "ls").exists()
    assert (root / "bin" / "cat").exists()
    assert sorted(p.name for p in (root / "home" / "app").iterdir()) == ["only"]
    assert os.stat(root / "h1").st_ino == os.stat(root / "h2").st_ino


def test_oci_output_validates_against_schemas(pybuild: Pybuild, tmp_path: Path) -> None:
    layout = oci_layout(pybuild, REPO / "fixtures" / "hello", tmp_path)
    counts = check_layout(layout)
    assert counts["manifest"] == 1 and counts["config"] == 1 and counts["layer"] >= 2


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_reads_built_oci_and_docker_archives(pybuild: Pybuild, tmp_path: Path) -> None:
    oci, docker = tmp_path / "i.oci.tar", tmp_path / "i.docker.tar"
    pybuild.build(
        REPO / "fixtures" / "hello",
        "-t",
        "hello:1",
        "-o",
        f"type=oci,dest={oci}",
        "-o",
        f"type=docker,dest={docker}",
    )
    for ref in (f"oci-archive:{oci}", f"docker-archive:{docker}"):
        done = subprocess.run(
            ["skopeo", "inspect", ref], capture_output=True, text=True, check=True
        )
        info = json.loads(done.stdout)
        assert info["Os"] == "linux" and info["Architecture"] == "amd64"
        assert any(e.startswith("GREETING=") for e in info["Env"])


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
def test_umoci_unpacks_built_image(pybuild: Pybuild, tmp_path: Path) -> None:
    # Debian's umoci 0.4.7 refuses +zstd layers, so this build stores gzip layers.
    layout = oci_layout(pybuild, REPO / "fixtures" / "hello", tmp_path, "--compression", "gzip")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:out:1", str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin" / "busybox").exists()
    assert (rootfs / "app" / "build-info.txt").read_text().startswith("built by pybuild")


def test_built_docker_archive_loads_back_into_a_fresh_store(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    archive = tmp_path / "hello.docker.tar"
    pybuild.build(REPO / "fixtures" / "hello", "-t", "hello:1", "-o", f"type=docker,dest={archive}")
    other = Pybuild(tmp_path / "store2")
    other("load", "-i", archive)
    assert "Hello from pybuild!" in other("run", "hello:1").out


@pytest.mark.requires_docker
def test_docker_loads_and_runs_built_archive(pybuild: Pybuild, tmp_path: Path) -> None:
    archive = tmp_path / "hello.docker.tar"
    pybuild.build(
        REPO / "fixtures" / "hello", "-t", "pybuild-hello:1", "-o", f"type=docker,dest={archive}"
    )
    subprocess.run(["docker", "load", "-i", str(archive)], check=True, capture_output=True)
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "pybuild-hello:1"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Hello from pybuild!" in done.stdout
