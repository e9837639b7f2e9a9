"""Choosing how RUN steps are isolated (runtime.isolation): pure logic, no namespaces made."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from runtime.errors import SandboxError, SyscallError
from runtime.isolation import (
    CHROOT_CAPABILITIES,
    Choice,
    choose,
    effective_capabilities,
    fallback_note,
    missing_capabilities,
    requested,
    run_refused,
)

ALL = sum(1 << bit for bit in CHROOT_CAPABILITIES)
DOCKER_DEFAULT = 0xA80425FB  # CapEff of a root process under docker's default profile


def _refused(err: int = errno.EPERM, call: str = "unshare") -> SyscallError:
    return SyscallError(f"{call} (flags=0x20000): refused", call=call, errno=err)


class _Namespaces:
    """Records whether the build's namespaces were entered; raises ``error`` if given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


def test_docker_default_capabilities_are_enough_for_chroot() -> None:
    assert missing_capabilities(DOCKER_DEFAULT) == []


def test_auto_uses_namespaces_where_they_work_and_says_nothing() -> None:
    enter = _Namespaces()
    choice = choose("auto", enter, lambda: ALL, 0)
    assert choice == Choice("namespaces", None)
    assert choice.mounts and enter.calls == 1


def test_auto_falls_back_to_chroot_with_one_line_when_unshare_is_refused() -> None:
    choice = choose("auto", _Namespaces(_refused()), lambda: DOCKER_DEFAULT, 0)
    assert choice.isolation == "chroot" and not choice.mounts
    assert choice.note is not None and "\n" not in choice.note
    assert "EPERM" in choice.note and "--isolation chroot" in choice.note
    for word in ("PIDs", "network", "mounts", "hostname"):
        assert word in choice.note


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EINVAL])
def test_auto_falls_back_when_user_namespaces_are_off(err: int) -> None:
    assert choose("auto", _Namespaces(_refused(err)), lambda: ALL, 0).isolation == "chroot"


def test_auto_does_not_hide_other_failures() -> None:
    other = _refused(errno.ENOMEM)
    with pytest.raises(SyscallError) as caught:
        choose("auto", _Namespaces(other), lambda: ALL, 0)
    assert caught.value is other
    mount = _refused(errno.EPERM, call="mount")
    with pytest.raises(SyscallError):
        choose("auto", _Namespaces(mount), lambda: ALL, 0)


def test_explicit_namespaces_never_fall_back() -> None:
    with pytest.raises(SyscallError):
        choose("namespaces", _Namespaces(_refused()), lambda: ALL, 0)


def test_explicit_chroot_enters_no_namespace_and_prints_nothing() -> None:
    enter = _Namespaces()
    assert choose("chroot", enter, lambda: DOCKER_DEFAULT, 0) == Choice("chroot", None)
    assert enter.calls == 0


def test_non_root_without_capabilities_gets_the_capability_and_both_ways_out() -> None:
    with pytest.raises(SandboxError) as caught:
        choose("auto", _Namespaces(_refused()), lambda: 0, 1000)
    error = caught.value
    assert "CAP_SYS_CHROOT" in error.message and "uid 1000" in error.message
    assert "unshare: EPERM" in error.message
    assert error.hint is not None
    assert "as root" in error.hint and "user namespaces" in error.hint


def test_explicit_chroot_names_only_the_missing_capabilities() -> None:
    without_chroot = ALL & ~(1 << 18)
    with pytest.raises(SandboxError) as caught:
        choose("chroot", _Namespaces(), lambda: without_chroot, 0)
    assert "needs CAP_SYS_CHROOT," in caught.value.message + ","
    assert "CAP_MKNOD" not in caught.value.message


def test_requested_takes_the_flag_then_the_environment_then_auto() -> None:
    assert requested("chroot", "namespaces") == "chroot"
    assert requested(None, "Chroot") == "chroot"
    assert requested(None, None) == "auto"
    assert requested(None, "") == "auto"


def test_an_unknown_isolation_names_where_it_came_from() -> None:
    with pytest.raises(SandboxError, match="PYBUILD_ISOLATION 'oci'"):
        requested(None, "oci")
    with pytest.raises(SandboxError, match="--isolation 'rootless'"):
        requested("rootless", None)


def test_fallback_note_names_the_errno() -> None:
    assert "unshare: ENOSPC" in fallback_note(_refused(errno.ENOSPC))


def test_effective_capabilities_reads_capeff(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\n")
    assert effective_capabilities(status) == DOCKER_DEFAULT
    assert effective_capabilities(tmp_path / "missing") == 0


def test_run_where_namespaces_are_refused_says_a_container_needs_them_and_what_to_do() -> None:
    error = run_refused(_refused(errno.EPERM))
    assert isinstance(error, SandboxError)
    assert "cannot run a container here: namespaces are not permitted (unshare: EPERM)" in (
        error.message
    )
    assert error.hint is not None and "pybuild build" in error.hint
    other = _refused(errno.EPERM, call="mount")
    assert run_refused(other) is other  # not a refusal of namespaces: said as it is
