"""What a process does before it mounts anything (a build, ``pybuild run``).

Builds and runs mount overlays; every mount stays private to this process. As a
non-root user the process first enters a user namespace as its root (rootless mode).
Both need a process that runs a single thread.
"""

from __future__ import annotations


def enter_private_mounts() -> None:
    """Enter rootless mode (a non-root user only), then a private mount namespace."""
    from runtime.rootfs import enter_private_mount_namespace
    from runtime.userns import enter_rootless

    enter_rootless()
    enter_private_mount_namespace()
