"""Lock-down building blocks that need no root: capability masks, the seccomp profile,
cgroup path arithmetic."""

from __future__ import annotations

import ctypes

import pytest

from runtime import cgroups, seccomp
from runtime.errors import SandboxError
from runtime.security import CAPABILITIES, DEFAULT_CAPABILITIES, capability_mask
from runtime.spec import Resources


def test_default_capability_mask_is_dockers() -> None:
    # CapBnd of `docker run busybox grep Cap /proc/self/status`.
    assert capability_mask(DEFAULT_CAPABILITIES) == 0xA80425FB


def test_capability_numbers_follow_the_kernel_header() -> None:
    assert CAPABILITIES.index("CAP_SYS_ADMIN") == 21
    assert CAPABILITIES.index("CAP_SETFCAP") == 31
    assert CAPABILITIES.index("CAP_CHECKPOINT_RESTORE") == 40


def test_unknown_capability_name_is_refused() -> None:
    with pytest.raises(ValueError):
        capability_mask(("CAP_FLY",))


def test_dangerous_syscalls_are_not_on_the_allow_list() -> None:
    blocked = {"mount", "umount2", "unshare", "setns", "pivot_root", "bpf", "kexec_load"}
    blocked |= {"init_module", "reboot", "open_by_handle_at", "keyctl", "add_key", "clone"}
    assert blocked.isdisjoint(seccomp.ALLOWED)
    assert len(set(seccomp.ALLOWED)) == len(seccomp.ALLOWED)


def test_every_allowed_name_is_known_to_libseccomp() -> None:
    lib = ctypes.CDLL(seccomp.LIBSECCOMP)
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    unknown = [n for n in seccomp.ALLOWED if lib.seccomp_syscall_resolve_name(n.encode()) == -1]
    assert unknown == []


def test_default_profile_compiles_without_installing() -> None:
    install = seccomp.build_default_profile()
    assert callable(install)  # not called: it would confine the test process


def test_act_errno_encodes_the_errno() -> None:
    assert seccomp.act_errno(1) == 0x00050001


@pytest.mark.parametrize(
    ("own", "mount_root", "expected"),
    [
        ("/", "/", ""),
        ("/process_api/abc", "/", "process_api/abc"),
        ("/docker/abc/sub", "/docker/abc", "sub"),
        ("/docker/abc", "/docker/abc", ""),
        ("/elsewhere", "/docker/abc", ""),
    ],
)
def test_own_cgroup_is_found_below_the_mount_root(own: str, mount_root: str, expected: str) -> None:
    assert cgroups._relative(own, mount_root) == expected


def test_cgroup_is_needed_only_for_limits() -> None:
    assert not cgroups.needed(Resources())
    assert cgroups.needed(Resources(pids=10))
    assert cgroups.needed(Resources(cpus=0.5))


def test_default_filter_compiles_to_bpf_instructions() -> None:
    program = seccomp.compile_default_filter()
    assert program and len(program) % 8 == 0  # struct sock_filter is 8 bytes
    assert seccomp.compile_default_filter() == program  # the same every time: shareable


def test_installer_refuses_what_is_not_bpf() -> None:
    with pytest.raises(SandboxError, match="not BPF"):
        seccomp.installer(b"\0" * 7)
