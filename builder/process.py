"""What a process does before it mounts anything (a build, ``pybuild run``).

Builds and runs mount overlays; every mount stays private to this process. As a
non-root user the process first enters a user namespace as its root (rootless mode):
a new one, or, for a container on a user network, the network holder's (see
:mod:`runtime.netbridge`). Both need a process that runs a single thread. A build may
instead use chroot isolation (``runtime.isolation``): then it enters no namespace and
mounts nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.isolation import Choice
    from runtime.netbridge import Holder


def enter_private_mounts(network_holder: Holder | None = None) -> None:
    """Enter rootless mode (a non-root user only), then a private mount namespace.

    With ``network_holder`` whose user namespace is not ours (a rootless user network),
    join that user namespace rather than make a new one."""
    from runtime.mountns import enter_private_mount_namespace
    from runtime.userns import enter_rootless

    if network_holder is not None:
        from runtime import netbridge

        if netbridge.owns_user_namespace(network_holder):
            netbridge.join_user_namespace(network_holder)
    enter_rootless()  # nothing to do as root, or inside the holder's user namespace
    enter_private_mount_namespace()


def enter_run_namespaces(network_holder: Holder | None = None) -> None:
    """:func:`enter_private_mounts` for ``pybuild run``: where namespaces are refused it
    says that a container needs them and what to do instead (no chroot fallback)."""
    from runtime import isolation
    from runtime.errors import SyscallError

    try:
        enter_private_mounts(network_holder)
    except SyscallError as exc:
        raise isolation.run_refused(exc) from None


def enter_isolation(flag: str | None) -> Choice:
    """Choose the build's isolation (``--isolation``, else ``$PYBUILD_ISOLATION``, else
    auto) and enter its namespaces when it uses them; see ``runtime.isolation.choose``."""
    from runtime import isolation

    wanted = isolation.requested(flag, os.environ.get(isolation.ISOLATION_ENV))
    return isolation.choose(
        wanted, enter_private_mounts, isolation.effective_capabilities, os.geteuid()
    )
