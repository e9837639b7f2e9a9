"""``--platform linux/amd64,linux/arm64``: one image index, a RUN per platform (arm64
under QEMU), skopeo/umoci reading it, a push to docker-registry and pulls per platform,
the cross-compile idiom needing no emulation, and the error without it.

One multi-platform build is shared by the module's emulated tests; the base is the
amd64 + arm64 busybox index that ``fixtures/make_base.py --format oci-index`` writes.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import REPO, Pybuild, assert_verified_clean, write_context
from tests.integration.registry_server import REGISTRY_BIN, Registry, run_registry

sys.path.insert(0, str(REPO / "fixtures"))

from make_base import MakeBaseError, make_base

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

HOST_UNAME = platform.machine()  # what uname -m says for the host's image
PLATFORMS = "linux/amd64,linux/arm64"
UNAME_DOCKERFILE = "FROM busybox\nRUN uname -m > /arch\n"
CROSS_DOCKERFILE = (
    "FROM --platform=$BUILDPLATFORM busybox AS build\n"
    "RUN echo toolchain > /toolchain\n"
    "ARG TARGETARCH\n"
    'RUN mkdir /out && echo "for $TARGETARCH on $(uname -m)" > /out/app-$TARGETARCH\n'
    "FROM busybox\n"
    "ARG TARGETARCH\n"
    "COPY --from=build /out/app-$TARGETARCH /app\n"
)


def _skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def index_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The amd64 + arm64 busybox index, named busybox:latest (arm64's busybox-static is
    fetched with apt-get download once per machine)."""
    out = tmp_path_factory.mktemp("index-base") / "busybox-multi.tar"
    try:
        make_base(out, "oci-index", "busybox:latest")
    except MakeBaseError as exc:
        pytest.skip(f"cannot make the arm64 busybox base: {exc}")
    return out


def _store(tmp_path_factory: pytest.TempPathFactory, index_archive: Path, name: str) -> Pybuild:
    cli = Pybuild(tmp_path_factory.mktemp(name))
    loaded = cli("load", "-i", index_archive)
    assert "Loaded image: busybox:latest" in loaded.out
    return cli


@dataclass(frozen=True)
class Built:
    cli: Pybuild
    archive: Path  # -o type=oci of the build
    metadata: dict[str, Any]
    tmp: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, index_archive: Path) -> Built:
    cli = _store(tmp_path_factory, index_archive, "multi-store")
    tmp = tmp_path_factory.mktemp("multi")
    ctx = write_context(tmp / "ctx", {}, UNAME_DOCKERFILE)
    archive, meta = tmp / "multi.tar", tmp / "meta.json"
    cli.build(
        ctx, "--platform", PLATFORMS, "-t", "multi:1",
        "-o", f"type=oci,dest={archive}", "--metadata-file", meta,
    )  # fmt: skip
    return Built(cli, archive, json.loads(meta.read_text()), tmp)


@pytest.mark.requires_qemu
def test_index_has_one_manifest_per_platform(built: Built) -> None:
    raw = json.loads(_skopeo("inspect", "--raw", f"oci-archive:{built.archive}"))
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = [(m["platform"]["os"], m["platform"]["architecture"]) for m in raw["manifests"]]
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]
    assert built.metadata["containerimage.digest"] == built.metadata["image.id"]


@pytest.mark.requires_qemu
@pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci (apt: umoci)")
@pytest.mark.parametrize(("arch", "uname"), [("amd64", "x86_64"), ("arm64", "aarch64")])
def test_umoci_unpacks_each_platform_with_its_own_uname(
    built: Built, tmp_path: Path, arch: str, uname: str
) -> None:
    layout = tmp_path / "layout"
    _skopeo(
        "copy", "--override-arch", arch,
        f"oci-archive:{built.archive}", f"oci:{layout}:{arch}",
    )  # fmt: skip
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{arch}", str(bundle)], check=True)
    # The arm64 RUN ran under QEMU: its uname -m is the emulated machine's.
    assert (bundle / "rootfs" / "arch").read_text() == f"{uname}\n"
    config = json.loads(_skopeo("inspect", "--config", f"oci:{layout}:{arch}"))
    assert config["architecture"] == arch


@pytest.mark.requires_qemu
def test_run_and_save_pick_the_host_image_or_the_named_platform(built: Built) -> None:
    cli = built.cli
    assert cli("run", "--rm", "multi:1", "cat", "/arch").out == f"{HOST_UNAME}\n"
    arm = cli("run", "--rm", "--platform", "linux/arm64", "multi:1", "cat", "/arch")
    assert arm.out == "aarch64\n"
    missing = cli("run", "--rm", "--platform", "linux/s390x", "multi:1", "true", ok=False)
    assert missing.code != 0 and "Traceback" not in missing.err
    assert "no image for linux/s390x (it has: linux/amd64, linux/arm64)" in missing.err
    arm_doc = json.loads(cli("inspect", "--platform", "linux/arm64", "multi:1").out)[0]
    assert arm_doc["Config"]["architecture"] == "arm64"
    assert arm_doc["RepoTags"] == ["multi:1"]  # the tag names the index it is in
    cli("tag", "multi:1", "multi:copy")  # the index, not the host's image alone
    copy = cli("run", "--rm", "--platform", "linux/arm64", "multi:copy", "cat", "/arch")
    assert copy.out == "aarch64\n"
    saved = built.tmp / "arm64.tar"
    cli("save", "--platform", "linux/arm64", "-o", saved, "multi:1")
    config = json.loads(_skopeo("inspect", "--config", f"docker-archive:{saved}"))
    assert config["architecture"] == "arm64"


@pytest.mark.requires_qemu
def test_single_platform_outputs_refuse_a_multi_platform_build(built: Built) -> None:
    ctx = write_context(built.tmp / "ctx-docker", {}, UNAME_DOCKERFILE)
    result = built.cli.build(
        ctx, "--platform", PLATFORMS, "-o", f"type=docker,dest={built.tmp / 'd.tar'}", ok=False
    )
    assert result.code == 1 and "Traceback" not in result.err
    assert "a docker-archive holds one platform per image" in " ".join(result.err.split())
    local = built.cli.build(
        ctx, "--platform", PLATFORMS, "-o", f"type=local,dest={built.tmp / 'root'}", ok=False
    )
    assert local.code == 2 and "one root filesystem per platform" in local.err


@pytest.mark.requires_qemu
def test_keys_differ_per_platform_and_a_rebuild_hits_every_step(built: Built) -> None:
    runs = [s for s in built.metadata["steps"] if s["instruction"].startswith("RUN")]
    assert len(runs) == 2 and not any(s["cached"] for s in runs)
    assert runs[0]["key"] != runs[1]["key"]
    again = built.tmp / "again.json"
    ctx = write_context(built.tmp / "ctx-again", {}, UNAME_DOCKERFILE)
    result = built.cli.build(ctx, "--platform", PLATFORMS, "--metadata-file", again)
    assert "2/2 steps cached (100%)" in result.err
    meta = json.loads(again.read_text())
    assert meta["containerimage.digest"] == built.metadata["containerimage.digest"]


@pytest.mark.requires_qemu
def test_store_checks_and_prune_keep_every_platform_of_a_tagged_index(built: Built) -> None:
    cli = built.cli
    assert_verified_clean(cli)
    cli("cache", "prune", "--all")
    for name, uname in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        run = cli("run", "--rm", "--platform", name, "multi:1", "cat", "/arch")
        assert run.out == f"{uname}\n"
    assert_verified_clean(cli)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if REGISTRY_BIN is None:
        pytest.skip("needs Debian's docker-registry (apt: docker-registry)")
    with run_registry(tmp_path_factory.mktemp("multi-registry")) as reg:
        yield reg


@pytest.mark.requires_qemu
def test_push_gives_an_index_and_each_platform_pulls_and_runs(
    built: Built, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    target = f"{registry.host}/multi/app:1"
    ctx = write_context(built.tmp / "ctx-push", {}, UNAME_DOCKERFILE)
    built.cli.build(ctx, "--platform", PLATFORMS, "-t", target, "--push")
    ref = f"docker://{target}"
    raw = json.loads(_skopeo("inspect", "--tls-verify=false", "--raw", ref))
    assert len(raw["manifests"]) == 2
    arm = json.loads(_skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64", ref))
    assert arm["Architecture"] == "arm64"
    puller = Pybuild(tmp_path_factory.mktemp("puller"))
    for name, uname in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        puller("pull", "--platform", name, target)
        run = puller("run", "--rm", "--platform", name, target, "cat", "/arch")
        assert run.out == f"{uname}\n"
    missing = puller("pull", "--platform", "linux/riscv64", target, ok=False)
    assert missing.code != 0 and "it has: linux/amd64, linux/arm64" in missing.err
    # pybuild push of a stored index sends it whole, as build --push does.
    again = f"{registry.host}/multi/copy:1"
    built.cli("tag", "multi:1", again)
    built.cli("push", again)
    copy = json.loads(_skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{again}"))
    assert [m["platform"]["architecture"] for m in copy["manifests"]] == ["amd64", "arm64"]


def _no_binfmt(tmp: Path) -> dict[str, str]:
    """The environment of a machine with no emulator registered (an empty binfmt_misc)."""
    empty = tmp / "binfmt_misc"
    empty.mkdir(exist_ok=True)
    return {"PYBUILD_BINFMT_MISC": str(empty)}


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory: pytest.TempPathFactory, index_archive: Path) -> Pybuild:
    return _store(tmp_path_factory, index_archive, "cross-store")


def test_cross_compile_builds_shared_steps_once_without_emulation(
    plain_store: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, CROSS_DOCKERFILE)
    meta = tmp_path / "meta.json"
    args = ("--progress", "plain", "--platform", PLATFORMS, "--metadata-file", meta, ctx)
    plain_store("build", *args, env=_no_binfmt(tmp_path))
    steps = json.loads(meta.read_text())["steps"]
    toolchain = [s for s in steps if "echo toolchain" in s["instruction"]]
    # The step before TARGETARCH is used keys the same for both targets: run once (by
    # whichever platform's solve reached it first; the other waited and hit).
    assert sorted(s["cached"] for s in toolchain) == [False, True]
    assert toolchain[0]["key"] == toolchain[1]["key"]
    compile_steps = [s for s in steps if "mkdir /out" in s["instruction"]]
    assert [s["cached"] for s in compile_steps] == [False, False]  # one per TARGETARCH
    out = tmp_path / "arm64-rootfs"
    single = ("--platform", "linux/arm64", "-o", f"type=local,dest={out}", ctx)
    again = plain_store("build", "--progress", "plain", *single, env=_no_binfmt(tmp_path))
    assert "steps cached (100%)" in again.err
    # Compiled natively on the build platform, for the target.
    assert (out / "app").read_text() == f"for arm64 on {HOST_UNAME}\n"


def test_foreign_run_without_emulation_fails_before_any_step(
    plain_store: Pybuild, tmp_path: Path
) -> None:
    dockerfile = (
        "FROM --platform=$BUILDPLATFORM busybox AS tools\nRUN echo native > /n\n"
        "FROM busybox\nCOPY --from=tools /n /n\nRUN uname -m > /arch\n"
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    meta = tmp_path / "meta.json"
    result = plain_store(
        "build", "--progress", "plain", "--platform", PLATFORMS, "--metadata-file", meta, ctx,
        ok=False, env=_no_binfmt(tmp_path),
    )  # fmt: skip
    err = " ".join(result.err.split())
    assert result.code == 1 and "Traceback" not in err
    assert "Dockerfile:5" in err and "RUN steps for linux/arm64" in err
    assert "qemu-user-static" in err and "binfmt_misc" in err
    assert "#1 " not in result.err and not meta.exists()  # no step started
