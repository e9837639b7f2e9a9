"""The container's /dev: a tmpfs with its own device nodes, devpts, shm and mqueue.

Built as runc's default config has it. The device nodes are never the host's own inodes
where the container could change them (:func:`make_device_nodes`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from runtime import linux
from runtime.errors import SyscallError
from runtime.rootfs import bind, make_mountpoint, remount_bind
from runtime.userns import in_initial_namespace

# runc's default devices (libcontainer/specconv AllowedDevices): name -> (major, minor).
DEV_NODES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
DEV_NODE_MODE = 0o666
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}


def make_device_nodes(dev: Path) -> None:
    """Create :data:`DEV_NODES` in ``dev`` (a fresh tmpfs), each a mount of its own.

    As root on the host they are new nodes (mknod, as runc does): a ``chmod``, ``chown``
    or ``touch`` inside changes the container's node, never the host's. Where mknod is
    refused (in a user namespace, or without CAP_MKNOD) the host's node is bound
    read-only instead; the container's root does not own it there either, so neither
    its mode, owner nor times can change, while reads and writes still reach the device.
    """
    fresh = in_initial_namespace()
    for name, (major, minor) in DEV_NODES.items():
        node = dev / name
        if fresh:
            try:
                os.mknod(node, stat.S_IFCHR | DEV_NODE_MODE, os.makedev(major, minor))
                os.chmod(node, DEV_NODE_MODE)  # regardless of umask
                # Bound on itself: a mount of its own, so a nodev remount of the tmpfs
                # later leaves the node usable.
                bind(str(node), node, recursive=False)
                continue
            except PermissionError:
                fresh = False
                with contextlib.suppress(FileNotFoundError):
                    node.unlink()
        node, _ = make_mountpoint(dev, name, is_dir=False, upper=None)
        bind(f"/dev/{name}", node, readonly=True, recursive=False)


def populate_dev(
    dev: Path, console: str | None, *, nodev: bool = False, shm_size: int | None = None
) -> None:
    """Fill an empty ``dev`` with a minimal /dev, as runc's default config does.

    Device nodes are the container's own (:func:`make_device_nodes`): nothing it does to
    them reaches the host's /dev. /dev/pts is a private devpts instance so the
    container's ptys are its own. ``console`` (a pty path) is bound at /dev/console.
    With ``nodev`` the tmpfs itself is nodev: the nodes made here (mounts of their own)
    still work, nodes the container makes with mknod cannot be opened.
    """
    flags = linux.MS_NOSUID | linux.MS_STRICTATIME
    linux.mount("tmpfs", str(dev), "tmpfs", flags, "mode=755,size=65536k")
    make_device_nodes(dev)
    if nodev:
        remount_bind(dev, linux.MS_NODEV)  # the nodes are mounts of their own: unaffected
    pts, _ = make_mountpoint(dev, "pts", is_dir=True, upper=None)
    pts_options = "newinstance,ptmxmode=0666,mode=0620"
    try:
        linux.mount(
            "devpts", str(pts), "devpts", linux.MS_NOSUID | linux.MS_NOEXEC, pts_options + ",gid=5"
        )
    except SyscallError as exc:
        if exc.errno != errno.EINVAL:
            raise
        # Rootless with a single-id mapping: gid 5 (tty) does not exist; runc drops it too.
        linux.mount("devpts", str(pts), "devpts", linux.MS_NOSUID | linux.MS_NOEXEC, pts_options)
    shm, _ = make_mountpoint(dev, "shm", is_dir=True, upper=None)
    linux.mount(
        "shm",
        str(shm),
        "tmpfs",
        linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
        f"mode=1777,size={shm_size // 1024 if shm_size else 65536}k",
    )
    mqueue, _ = make_mountpoint(dev, "mqueue", is_dir=True, upper=None)
    try:
        linux.mount(
            "mqueue", str(mqueue), "mqueue", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        )
    except SyscallError:
        os.rmdir(mqueue)  # optional: POSIX message queues are rarely needed in a build
    for name, link in DEV_LINKS.items():
        os.symlink(link, dev / name)
    if console is not None:
        node, _ = make_mountpoint(dev, "console", is_dir=False, upper=None)
        bind(console, node, recursive=False)
