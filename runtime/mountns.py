"""This process's own mount namespace: entered once, before anything is mounted.

Apart from :mod:`runtime.rootfs` (overlays, copies) because every build and run enters
it at start-up, also a build that mounts nothing.
"""

from __future__ import annotations

from runtime import linux


def enter_private_mount_namespace() -> None:
    """Give this process its own mount namespace with private propagation.

    Call once, at start-up, while single-threaded: every mount pybuild makes afterwards
    vanishes with the process and never shows up on the host.
    """
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
