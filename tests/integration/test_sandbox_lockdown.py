"""The default lock-down: docker's capabilities, no_new_privs, seccomp, masked /proc paths,
read-only /proc/sys and /sys; ``privileged`` turns it off. Also tmpfs mounts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.rootfs import overlay_supported
from runtime.rootsetup import MASKED_PATHS
from runtime.security import DEFAULT_CAPABILITIES, capability_mask
from runtime.spec import BindMount, TmpfsMount
from tests.integration.busybox_rootfs import make_busybox_rootfs
from tests.integration.busybox_rootfs import run_sh as sh

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts"),
    pytest.mark.skipif(not overlay_supported(), reason="kernel has no overlayfs"),
]

EXTRA_APPLETS = ("unshare", "umount", "df", "find")


@pytest.fixture(scope="module")
def lower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_busybox_rootfs(tmp_path_factory.mktemp("busybox"))
    for applet in EXTRA_APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    return root


def status_fields(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_root_holds_exactly_dockers_default_capabilities(lower: Path, tmp_path: Path) -> None:
    result, out, _ = sh(lower, tmp_path, "cat /proc/self/status")
    fields = status_fields(out)
    mask = f"{capability_mask(DEFAULT_CAPABILITIES):016x}"
    assert result.exit_code == 0
    assert (fields["CapBnd"], fields["CapEff"], fields["CapPrm"]) == (mask, mask, mask)
    assert (fields["CapInh"], fields["CapAmb"]) == ("0" * 16, "0" * 16)


def test_non_root_user_holds_no_capabilities(lower: Path, tmp_path: Path) -> None:
    _, out, _ = sh(lower, tmp_path, "cat /proc/self/status", user="app")
    fields = status_fields(out)
    assert (fields["CapEff"], fields["CapPrm"]) == ("0" * 16, "0" * 16)
    assert fields["CapBnd"] == f"{capability_mask(DEFAULT_CAPABILITIES):016x}"


def test_seccomp_filter_is_set_and_no_new_privs_is_off_by_default(
    lower: Path, tmp_path: Path
) -> None:
    _, out, _ = sh(lower, tmp_path, "cat /proc/self/status", user="app")
    fields = status_fields(out)
    assert fields["NoNewPrivs"] == "0"  # as docker: setuid binaries (sudo) work
    assert fields["Seccomp"] == "2"  # SECCOMP_MODE_FILTER


@pytest.mark.parametrize("init", [False, True], ids=["command-pid1", "with-init"])
def test_no_new_privs_is_set_when_asked(lower: Path, tmp_path: Path, init: bool) -> None:
    _, out, _ = sh(lower, tmp_path, "cat /proc/self/status", no_new_privs=True, init=init)
    fields = status_fields(out)
    assert (fields["NoNewPrivs"], fields["Seccomp"]) == ("1", "2")


def test_seccomp_filter_is_set_under_init_without_no_new_privs(lower: Path, tmp_path: Path) -> None:
    _, out, _ = sh(lower, tmp_path, "cat /proc/1/status", init=True)
    fields = status_fields(out)
    assert (fields["NoNewPrivs"], fields["Seccomp"]) == ("0", "2")  # PID 1, our init


def test_seccomp_refuses_unshare_with_eperm(lower: Path, tmp_path: Path) -> None:
    result, _, err = sh(lower, tmp_path, "unshare -U true")
    assert result.exit_code != 0
    assert "Operation not permitted" in err


def test_privileged_skips_the_lock_down(lower: Path, tmp_path: Path) -> None:
    result, out, _ = sh(
        lower, tmp_path, "cat /proc/self/status; echo x > /proc/sys/kernel/hostname; hostname",
        privileged=True,
    )  # fmt: skip
    fields = status_fields(out)
    assert result.exit_code == 0
    assert int(fields["CapEff"], 16) & (1 << 21)  # CAP_SYS_ADMIN
    assert (fields["NoNewPrivs"], fields["Seccomp"]) == ("0", "0")
    assert out.splitlines()[-1] == "x"  # /proc/sys was writable (UTS namespace: ours only)


def test_masked_proc_files_read_empty_and_dirs_are_empty(lower: Path, tmp_path: Path) -> None:
    script = "wc -c < /proc/timer_list; ls -A /proc/acpi | wc -l; ls -A /sys/firmware | wc -l"
    result, out, _ = sh(lower, tmp_path, script)
    assert result.exit_code == 0
    assert out.split() == ["0", "0", "0"]


def test_masked_and_readonly_paths_are_mounted_over(lower: Path, tmp_path: Path) -> None:
    _, out, _ = sh(lower, tmp_path, "cat /proc/self/mountinfo")
    mounts = {line.split()[4]: line.split()[5] for line in out.splitlines()}
    present = [p for p in MASKED_PATHS if os.path.lexists(p)]
    assert present, "the host has none of the masked paths: nothing tested"
    assert all(p in mounts for p in present)
    assert mounts["/proc/sys"].startswith("ro")
    assert mounts["/sys"].startswith("ro")


def test_proc_sys_refuses_writes(lower: Path, tmp_path: Path) -> None:
    result, _, err = sh(lower, tmp_path, "echo x > /proc/sys/kernel/hostname")
    assert result.exit_code != 0
    assert "Read-only file system" in err


def test_tmpfs_mount_has_its_size_and_mode_and_leaves_no_trace(lower: Path, tmp_path: Path) -> None:
    script = "stat -c %a /scratch; df -k /scratch | tail -1; echo data > /scratch/f"
    result, out, _ = sh(
        lower, tmp_path, script, tmpfs=(TmpfsMount("/scratch", size=2 << 20, mode=0o750),)
    )
    lines = out.splitlines()
    assert result.exit_code == 0
    assert lines[0] == "750"
    assert lines[1].split()[1] == "2048"  # 1K-blocks
    assert not (tmp_path / "upper" / "scratch").exists()  # stub removed, data never in upper


def test_nested_bind_lands_inside_tmpfs(lower: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("hello\n")
    result, out, _ = sh(
        lower,
        tmp_path,
        "cat /t/inner/f",
        tmpfs=(TmpfsMount("/t"),),
        mounts=(BindMount(src, "/t/inner"),),
    )
    assert (result.exit_code, out) == (0, "hello\n")
