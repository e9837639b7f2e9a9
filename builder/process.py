"""What a process does before it mounts anything (a build, ``pybuild run``).

Builds and runs mount overlays; every mount stays private to this process. As a
non-root user the process first enters a user namespace as its root (rootless mode).
Both need a process that runs a single thread. A build may instead use chroot
isolation (``runtime.isolation``): then it enters no namespace and mounts nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.isolation import Choice


def enter_private_mounts() -> None:
    """Enter rootless mode (a non-root user only), then a private mount namespace."""
    from runtime.rootfs import enter_private_mount_namespace
    from runtime.userns import enter_rootless

    enter_rootless()
    enter_private_mount_namespace()


def enter_isolation(flag: str | None) -> Choice:
    """Choose the build's isolation (``--isolation``, else ``$PYBUILD_ISOLATION``, else
    auto) and enter its namespaces when it uses them; see ``runtime.isolation.choose``."""
    from runtime import isolation

    wanted = isolation.requested(flag, os.environ.get(isolation.ISOLATION_ENV))
    return isolation.choose(
        wanted, enter_private_mounts, isolation.effective_capabilities, os.geteuid()
    )
