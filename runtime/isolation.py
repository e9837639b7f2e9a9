"""How RUN steps are isolated: Linux namespaces, or a chroot where namespaces are refused.

``namespaces`` is the sandbox of ``runtime.sandbox`` (new mount, PID, UTS, IPC and network
namespaces, a pivoted overlay root). ``chroot`` (as Buildah's ``--isolation chroot``, but
without its private mount and UTS namespaces, which need ``CAP_SYS_ADMIN``) runs the
step's process chrooted into a copy of its root (``runtime.chroot``): what a container
with docker's default capabilities and seccomp profile can do, as CI job containers are.
``auto`` (the default) takes namespaces, and chroot only when the kernel or the
container runtime refuses to create them; the caller says so in one line
(:func:`fallback_note`).

The choice never enters a cache key: both give the same layers for the same inputs.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import SandboxError, SyscallError

ISOLATION_ENV = "PYBUILD_ISOLATION"
ISOLATIONS = ("auto", "namespaces", "chroot")
# unshare(2) refusing namespaces: EPERM (no CAP_SYS_ADMIN, or a seccomp filter such as
# docker's default), ENOSPC (user.max_user_namespaces is 0), EINVAL/ENOSYS (not built in).
REFUSED = (errno.EPERM, errno.EACCES, errno.ENOSPC, errno.EINVAL, errno.ENOSYS)
# What chroot isolation does itself, by capability number (capability.h): enter the
# root, make /dev's nodes, become a USER, and copy layers with their owners and modes.
CHROOT_CAPABILITIES = {
    18: "CAP_SYS_CHROOT",
    27: "CAP_MKNOD",
    7: "CAP_SETUID",
    6: "CAP_SETGID",
    0: "CAP_CHOWN",
    1: "CAP_DAC_OVERRIDE",
    3: "CAP_FOWNER",
}
NOT_ISOLATED = "PIDs, network, mounts and hostname"


@dataclass(frozen=True)
class Choice:
    """The isolation a build uses, and the one line to print when auto fell back."""

    isolation: str  # "namespaces" or "chroot"
    note: str | None = None

    @property
    def mounts(self) -> bool:
        """Whether this process may mount (it holds a private mount namespace)."""
        return self.isolation == "namespaces"


def requested(flag: str | None, env: str | None) -> str:
    """The isolation asked for: the flag, else ``$PYBUILD_ISOLATION``, else ``auto``."""
    value = (flag or env or "auto").strip().lower()
    if value not in ISOLATIONS:
        where = "--isolation" if flag else ISOLATION_ENV
        raise SandboxError(
            f"{where} {value!r} is not one of {', '.join(ISOLATIONS)}",
            hint="auto (the default) uses namespaces where the kernel allows them; chroot "
            "runs RUN steps without namespaces or mounts (CI job containers)",
        )
    return value


def choose(
    wanted: str,
    enter_namespaces: Callable[[], None],
    capabilities: Callable[[], int],
    uid: int,
) -> Choice:
    """Decide, entering the build's namespaces when they are used.

    ``enter_namespaces`` enters them (rootless user namespace, private mount namespace)
    or raises :class:`SyscallError`; ``capabilities`` gives the effective set as a bit
    mask. ``auto`` falls back to chroot only when ``unshare`` was refused (:data:`REFUSED`).
    Raises :class:`SandboxError` naming the missing capabilities when chroot cannot work.
    """
    if wanted == "chroot":
        _check_capabilities(capabilities(), uid, None)
        return Choice("chroot")
    try:
        enter_namespaces()
    except SyscallError as exc:
        if wanted != "auto" or exc.call != "unshare" or exc.errno not in REFUSED:
            raise
        _check_capabilities(capabilities(), uid, exc)
        return Choice("chroot", fallback_note(exc))
    return Choice("namespaces")


def fallback_note(exc: SyscallError) -> str:
    """The one line ``auto`` prints when it falls back to chroot."""
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return (
        f"namespaces are not permitted here (unshare: {name}): RUN steps run with "
        f"--isolation chroot, which does not isolate {NOT_ISOLATED}, and without "
        "CAP_SYS_ADMIN mounts no /proc or /sys (the image's own are seen)"
    )


def run_refused(exc: SyscallError) -> SyscallError | SandboxError:
    """What ``pybuild run`` says when namespaces are refused (``exc`` from entering them):
    a container needs its own namespaces, so there is no chroot fallback for it. Other
    failures are returned as they are."""
    if exc.call != "unshare" or exc.errno not in REFUSED:
        return exc
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return SandboxError(
        f"cannot run a container here: namespaces are not permitted (unshare: {name}), and "
        "`pybuild run` has no --isolation chroot (a container is its own PID, mount and "
        "network namespaces)",
        hint="in a CI job container, build and push or export the image with `pybuild "
        "build` (its RUN steps fall back to --isolation chroot), then run it where "
        "namespaces work: on a host or VM, as root or rootless with user namespaces allowed",
    )


def missing_capabilities(effective: int) -> list[str]:
    """The capabilities chroot isolation needs that ``effective`` lacks."""
    return [name for bit, name in CHROOT_CAPABILITIES.items() if not effective >> bit & 1]


def _check_capabilities(effective: int, uid: int, refused: SyscallError | None) -> None:
    missing = missing_capabilities(effective)
    if not missing:
        return
    why = ""
    if refused is not None:
        name = errno.errorcode.get(refused.errno, str(refused.errno))
        why = f"namespaces are refused here (unshare: {name}) and "
    raise SandboxError(
        f"cannot run RUN steps: {why}--isolation chroot needs {', '.join(missing)}, "
        f"which this process (uid {uid}) does not have",
        hint="either run the job as root in its container (docker's default capabilities "
        "are enough: no --privileged; e.g. `docker run --user 0`, Kubernetes "
        "`runAsUser: 0`), or allow user namespaces so pybuild runs rootless (a seccomp "
        "profile that permits unshare(CLONE_NEWUSER), and /etc/subuid ranges for the user)",
    )


def effective_capabilities(status: Path = Path("/proc/self/status")) -> int:
    """This process's effective capability set (``CapEff``); 0 when it cannot be read."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0
