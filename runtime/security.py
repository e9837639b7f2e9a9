"""The lock-down applied to a container's process just before exec, as docker does it.

Capabilities are cut to moby's default set (bounding set dropped, ambient and inheritable
emptied; a non-root user then holds none, the kernel clearing them on setuid) and docker's
default seccomp filter is installed. no_new_privs (setuid binaries and file capabilities
grant nothing) is off by default, as in docker, so ``sudo`` after ``USER app`` works; a
spec asks for it as ``docker run --security-opt no-new-privileges`` does.

Order, as runc's: with no_new_privs, the filter is the last step before ``execve``;
without it, installing a filter needs CAP_SYS_ADMIN, so it goes in first, while still
root, and what follows (capset, setuid, execve) is allowed by the filter itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from runtime import linux

# linux/capability.h numbering.
CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

# moby's oci/caps/defaults.go, in its order.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)


def capability_mask(names: tuple[str, ...]) -> int:
    """Bit mask of ``names`` (``CAP_*``); raises ValueError for an unknown name."""
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES.index(name)
    return mask


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text().strip())
    return len(CAPABILITIES) - 1


def restrict_capabilities(keep: tuple[str, ...] = DEFAULT_CAPABILITIES) -> None:
    """Drop every capability outside ``keep`` from the bounding set and set effective =
    permitted = ``keep``, inheritable and ambient empty. Call as root, before setuid."""
    mask = capability_mask(keep)
    for cap in range(last_capability() + 1):
        if not mask & (1 << cap) and linux.in_bounding_set(cap):
            linux.drop_bounding_capability(cap)
    linux.clear_ambient_capabilities()
    linux.capset(effective=mask, permitted=mask, inheritable=0)


def start_lock_down(
    install_filter: Callable[[], None],
    *,
    no_new_privs: bool,
    keep: tuple[str, ...] = DEFAULT_CAPABILITIES,
) -> None:
    """As root, before becoming the user: without no_new_privs the seccomp filter goes
    in now (it needs CAP_SYS_ADMIN then); capabilities are cut to ``keep``."""
    if not no_new_privs:
        install_filter()
    restrict_capabilities(keep)


def finish_lock_down(install_filter: Callable[[], None], *, no_new_privs: bool) -> None:
    """With no_new_privs: set it, then install the seccomp filter from
    :func:`build_default_profile`; call after setuid, right before exec. Without, there
    is nothing left to do (:func:`start_lock_down` installed the filter)."""
    if no_new_privs:
        linux.set_no_new_privs()
        install_filter()
