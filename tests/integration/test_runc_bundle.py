"""OCI runtime bundles: ``config.json`` validates against the runtime-spec schemas and
``runc run`` runs the bundle with the same lock-down as our sandbox."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from runtime.ocispec import oci_config, write_bundle
from runtime.security import DEFAULT_CAPABILITIES, capability_mask
from runtime.spec import BindMount, ContainerSpec, Resources, Rootfs, TmpfsMount
from tests.integration.busybox_rootfs import make_busybox_rootfs
from tests.runtime_schema import SCHEMA_DIR, schema_errors

RUNC = shutil.which("runc")


def spec_for(args: tuple[str, ...], **fields: object) -> ContainerSpec:
    unused = Rootfs((), Path("/unused"), Path("/unused"))  # a bundle has its own rootfs
    return ContainerSpec(unused, args, env=("PATH=/bin",), **fields)  # type: ignore[arg-type]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_busybox_rootfs(tmp_path / "bundle" / "rootfs")


@pytest.mark.skipif(not SCHEMA_DIR.is_dir(), reason="no ../shared/conformance/oci-runtime-spec")
@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"user": "app", "network": "none", "readonly_rootfs": True, "tty": True},
        {
            "mounts": (BindMount(Path("/etc"), "/host-etc", readonly=True),),
            "tmpfs": (TmpfsMount("/scratch", size=1 << 20, mode=0o700),),
            "resources": Resources(memory=64 << 20, pids=100, cpus=1.5),
        },
        {"privileged": True},
    ],
    ids=["defaults", "user-none-ro-tty", "mounts-resources", "privileged"],
)
def test_config_validates_against_the_runtime_spec_schema(
    rootfs: Path, fields: dict[str, object]
) -> None:
    config = oci_config(spec_for(("sh",), **fields), rootfs)
    assert schema_errors(config) == []


def test_config_carries_the_lock_down_and_resolved_user(rootfs: Path) -> None:
    config = oci_config(spec_for(("sh",), user="app", resources=Resources(pids=7)), rootfs)
    process, linux = config["process"], config["linux"]
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50]}
    assert process["capabilities"]["bounding"] == list(DEFAULT_CAPABILITIES)
    assert process["capabilities"]["effective"] == []  # non-root holds none, as in docker
    assert process["noNewPrivileges"] is False  # as docker: off unless asked
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert linux["resources"]["pids"] == {"limit": 7}
    assert "HOME=/home/app" in process["env"]


def test_bundle_refers_to_its_rootfs_relatively(rootfs: Path, tmp_path: Path) -> None:
    path = write_bundle(spec_for(("true",)), rootfs, tmp_path / "bundle")
    assert json.loads(path.read_text())["root"]["path"] == "rootfs"


def _runc(bundle: Path, container_id: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [RUNC or "runc", "run", "--bundle", str(bundle), container_id],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        subprocess.run(
            [RUNC or "runc", "delete", "--force", container_id], capture_output=True, check=False
        )


@pytest.mark.requires_root
@pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root here")
@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
def test_runc_runs_the_bundle_locked_down(rootfs: Path, tmp_path: Path) -> None:
    script = (
        "echo hello from runc; id -u; hostname; "
        "grep -e CapBnd -e NoNewPrivs -e Seccomp: /proc/self/status; exit 3"
    )
    spec = spec_for(("sh", "-c", script), hostname="bundled", no_new_privs=True)
    write_bundle(spec, rootfs, tmp_path / "bundle")
    done = _runc(tmp_path / "bundle", f"pybuild-test-{secrets.token_hex(6)}")
    lines = done.stdout.splitlines()
    assert done.returncode == 3, done.stderr
    assert lines[:3] == ["hello from runc", "0", "bundled"]
    fields = dict(line.split(":\t") for line in lines[3:])
    assert fields["CapBnd"] == f"{capability_mask(DEFAULT_CAPABILITIES):016x}"
    assert (fields["NoNewPrivs"], fields["Seccomp"]) == ("1", "2")


@pytest.mark.requires_root
@pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root here")
@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
def test_runc_applies_user_mounts_and_limits(rootfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("bound\n")
    spec = spec_for(
        ("sh", "-c", "id -u; cat /data/f; stat -c %a /scratch; mount -t tmpfs x /mnt"),
        user="app",
        mounts=(BindMount(src, "/data", readonly=True),),
        tmpfs=(TmpfsMount("/scratch", mode=0o700),),
        resources=Resources(pids=50),
    )
    write_bundle(spec, rootfs, tmp_path / "bundle")
    done = _runc(tmp_path / "bundle", f"pybuild-test-{secrets.token_hex(6)}")
    assert done.stdout.splitlines() == ["1000", "bound", "700"], done.stderr
    assert done.returncode != 0  # the mount was refused
