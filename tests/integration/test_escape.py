"""Escape attempts from inside the default (locked-down) sandbox; each must fail.

Where a test could pass for a reason other than the lock-down, a twin runs the same
attempt with ``privileged=True`` and shows it getting further, so the test can fail.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import struct
from pathlib import Path

import pytest

from runtime.rootfs import overlay_supported
from runtime.spec import BindMount, TmpfsMount
from tests.integration.busybox_rootfs import make_busybox_rootfs
from tests.integration.busybox_rootfs import run_sh as sh

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts"),
    pytest.mark.skipif(not overlay_supported(), reason="kernel has no overlayfs"),
]

EXTRA_APPLETS = ("pivot_root", "umount", "find", "chroot", "nsenter")
SECRET = "host-secret-4f1c"
COUNT_MNT = "grep -c ' /mnt ' /proc/self/mountinfo"


def euid_exit_elf() -> bytes:
    """A minimal static x86-64 ELF whose exit status is its effective uid & 0xff."""
    code = bytes.fromhex(
        "b86b000000"  # mov eax, 107 (geteuid)
        "0f05"  # syscall
        "89c7"  # mov edi, eax
        "b83c000000"  # mov eax, 60 (exit)
        "0f05"  # syscall
    )
    base, start = 0x400000, 64 + 56
    size = start + len(code)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + start, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + program + code


@pytest.fixture(scope="module")
def lower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_busybox_rootfs(tmp_path_factory.mktemp("busybox"))
    for applet in EXTRA_APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "opt").mkdir()
    if platform.machine() == "x86_64":
        euid = root / "opt" / "euid"
        euid.write_bytes(euid_exit_elf())
        os.chown(euid, 0, 0)
        os.chmod(euid, 0o4755)  # setuid root
        shutil.copy2(root / "bin" / "busybox", root / "opt" / "busybox")
    return root


def test_host_file_outside_the_rootfs_cannot_be_read(lower: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    script = (
        f"cat {secret}; cat /../../../..{secret}; cat /proc/1/root/..{secret}; "
        f"cat /proc/self/root/../../..{secret}; find / -xdev -name secret.txt"
    )
    result, out, err = sh(lower, tmp_path, script)
    assert SECRET not in out
    assert "secret.txt" not in out
    assert err.count("No such file or directory") == 4
    assert result.exit_code == 0  # find ran to the end and found nothing


@pytest.mark.parametrize(
    "command",
    ["mount -t tmpfs none /mnt", "mount -t proc proc /mnt", "mount -o bind /bin /mnt"],
)
def test_mounting_inside_is_refused(lower: Path, tmp_path: Path, command: str) -> None:
    result, out, err = sh(
        lower, tmp_path, f"mkdir -p /mnt; {command}; grep -c ' /mnt ' /proc/self/mountinfo"
    )
    assert "permission denied" in err
    assert out.strip() == "0"
    assert result.exit_code == 1  # grep -c found no /mnt mount


def test_mounting_works_when_privileged(lower: Path, tmp_path: Path) -> None:
    script = f"mkdir -p /mnt; mount -t tmpfs none /mnt; {COUNT_MNT}"
    _, out, _ = sh(lower, tmp_path, script, privileged=True)
    assert out.strip() == "1"


def test_masks_cannot_be_unmounted(lower: Path, tmp_path: Path) -> None:
    result, out, err = sh(lower, tmp_path, "umount /proc/acpi; umount /proc/sys; ls -A /proc/acpi")
    assert err.count("Operation not permitted") == 2
    assert out == ""
    assert result.exit_code == 0


def test_pivot_root_again_is_refused(lower: Path, tmp_path: Path) -> None:
    result, _, err = sh(lower, tmp_path, "mkdir -p /new/old; pivot_root /new /new/old")
    assert result.exit_code != 0
    assert "Operation not permitted" in err


def test_entering_other_namespaces_is_refused(lower: Path, tmp_path: Path) -> None:
    result, _, err = sh(lower, tmp_path, "nsenter -t 1 -m true")
    assert result.exit_code != 0
    assert "Operation not permitted" in err


def test_dotdot_and_proc_root_links_end_at_the_container_root(lower: Path, tmp_path: Path) -> None:
    (tmp_path / "host-marker").write_text(SECRET)
    script = "ls -a /.. /proc/1/root/.. /proc/self/root/../.. | grep -c -e host-marker -e upper"
    _, out, _ = sh(lower, tmp_path, script)
    assert out.strip() == "0"


def test_chroot_inside_cannot_climb_out(lower: Path, tmp_path: Path) -> None:
    script = (
        "mkdir -p /jail/bin && cp /bin/busybox /jail/bin/ && ln -s busybox /jail/bin/sh && "
        "ln -s busybox /jail/bin/ls && chroot /jail /bin/sh -c 'cd ../../..; ls /'"
    )
    result, out, _ = sh(lower, tmp_path, script)
    assert result.exit_code == 0
    assert out.split() == ["bin"]  # the jail's root, not the container's or the host's


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the setuid probe is x86-64 code")
def test_setuid_binary_gains_nothing_under_no_new_privs(lower: Path, tmp_path: Path) -> None:
    result, _, _ = sh(lower, tmp_path, "/opt/euid", user="app", no_new_privs=True)
    assert result.exit_code == 1000 & 0xFF  # still uid 1000: the setuid bit was ignored


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the setuid probe is x86-64 code")
def test_setuid_binary_works_by_default_as_in_docker(lower: Path, tmp_path: Path) -> None:
    result, _, _ = sh(lower, tmp_path, "/opt/euid", user="app")
    assert result.exit_code == 0  # euid 0, as `sudo` after `USER app` needs


def test_non_root_user_cannot_regain_capabilities(lower: Path, tmp_path: Path) -> None:
    result, out, _ = sh(lower, tmp_path, "/opt/busybox grep CapEff /proc/self/status", user="app")
    assert out.split() == ["CapEff:", "0" * 16]
    assert result.exit_code == 0


def test_sysrq_trigger_cannot_be_written(lower: Path, tmp_path: Path) -> None:
    result, _, err = sh(lower, tmp_path, "echo h > /proc/sysrq-trigger")
    assert result.exit_code != 0
    if os.path.exists("/proc/sysrq-trigger"):
        assert "Read-only file system" in err
    else:  # this kernel has no magic SysRq: nothing to reach
        assert "nonexistent" in err or "No such file" in err


def test_host_pids_are_invisible(lower: Path, tmp_path: Path) -> None:
    host_pid = os.getpid()
    script = f"ls /proc | grep -c '^[0-9]*$'; kill -0 {host_pid}; ls /proc/{host_pid}"
    result, out, err = sh(lower, tmp_path, script)
    assert int(out.split()[0]) <= 3  # sh, ls, grep: the container's own
    assert "No such process" in err
    assert result.exit_code != 0


def test_symlinked_mount_targets_stay_inside_the_rootfs(tmp_path: Path) -> None:
    host_dir = tmp_path / "host-etc"
    host_dir.mkdir()
    lower = make_busybox_rootfs(tmp_path / "lower")
    (lower / "abs").symlink_to(host_dir)  # absolute: would be the host's dir if followed
    (lower / "rel").symlink_to("../../../../../../../.." + str(host_dir))
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("bound\n")
    mounts = (BindMount(src, "/abs/bind"), BindMount(src / "file", "/rel/file"))
    tmpfs = (TmpfsMount("/abs/scratch"),)
    (tmp_path / "run").mkdir()
    result, out, _ = sh(
        lower, tmp_path / "run", "cat /abs/bind/file /rel/file", mounts=mounts, tmpfs=tmpfs
    )
    assert (result.exit_code, out) == (0, "bound\nbound\n")
    assert list(host_dir.iterdir()) == []  # nothing created or mounted on the host


def test_sys_refuses_writes(lower: Path, tmp_path: Path) -> None:
    result, _, err = sh(lower, tmp_path, "mkdir /sys/evil; echo 1 > /sys/kernel/uevent_helper")
    assert err.count("Read-only file system") == 2
    assert result.exit_code != 0


def test_hostname_cannot_be_changed(lower: Path, tmp_path: Path) -> None:
    before = socket.gethostname()
    result, _, err = sh(lower, tmp_path, "hostname evil")
    assert result.exit_code != 0
    assert "Operation not permitted" in err
    assert socket.gethostname() == before


def test_device_nodes_made_inside_cannot_be_opened(lower: Path, tmp_path: Path) -> None:
    # c 1 3 is /dev/null: harmless to open, yet it stands for any host device (a disk).
    src = tmp_path / "bound"
    src.mkdir()
    script = (
        "mkdir -p /tmp; for d in /tmp /dev /bound /scratch; do mknod $d/node c 1 3 && "
        "echo x > $d/node && echo opened $d; done; echo x > /dev/null && echo null works"
    )
    result, out, err = sh(
        lower,
        tmp_path,
        script,
        mounts=(BindMount(src, "/bound"),),
        tmpfs=(TmpfsMount("/scratch"),),
    )
    assert out == "null works\n"
    assert err.count("Permission denied") == 4
    assert result.exit_code == 0


def test_device_nodes_made_inside_open_when_privileged(lower: Path, tmp_path: Path) -> None:
    script = "mkdir -p /tmp; mknod /tmp/node c 1 3 && echo x > /tmp/node && echo opened"
    _, out, _ = sh(lower, tmp_path, script, privileged=True)
    assert out == "opened\n"
