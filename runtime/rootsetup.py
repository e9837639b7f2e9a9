"""Build a container's root filesystem tree and pivot into it (runs in the sandbox's PID 1).

Order, as runc's ``prepareRootfs``: new mount/UTS/IPC(/net) namespaces, overlay root,
/proc, /dev, /sys, /etc/hosts and /etc/resolv.conf, the user's bind and tmpfs mounts
(parents before children), then, unless privileged, the masked and read-only paths of
docker's default spec; finally ``pivot_root`` detaches the host's tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fstree.tree import remove_tree
from runtime import linux
from runtime.devices import populate_dev
from runtime.errors import SandboxError, SyscallError
from runtime.rootfs import (
    bind,
    make_mountpoint,
    mount_overlay,
    mount_proc,
    mount_sys,
    remount_readonly,
    resolve_in_root,
)
from runtime.spec import BindMount, ContainerSpec, TmpfsMount

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without loading typing (the fork server's start)
if TYPE_CHECKING:
    from typing import Any

    Report = Callable[[dict[str, Any]], None]

SCRATCH_PREFIX = "pybuild-sandbox-"

# Docker's default spec (moby oci/defaults.go), which runc applies after the mounts:
# masked paths get /dev/null (files) or an empty read-only tmpfs (dirs) on top...
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
# ...and read-only paths a read-only bind of themselves.
READONLY_PATHS = (
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


@dataclass(frozen=True)
class Staging:
    """Host-side scratch for one run, removed when the run ends."""

    root: Path
    empty: Path
    hosts: Path
    resolv: Path
    # The copy snapshotter's merged tree (runtime.snapshot), bound instead of an overlay.
    copy_root: Path | None = None


@contextmanager
def scratch_dir(parent: Path | None) -> Iterator[Path]:
    """A new dir (mode 0700) named ``pybuild-sandbox-*`` in ``parent`` (None: the system
    temp dir) for one run's staging, removed with all below it on exit: what
    ``tempfile.TemporaryDirectory`` does, without loading tempfile (and shutil, random)
    into the fork server, whose start a build's first RUN waits for."""
    if parent is None:
        import tempfile

        parent = Path(tempfile.gettempdir())
    while True:
        path = parent / f"{SCRATCH_PREFIX}{os.urandom(6).hex()}"
        try:
            path.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    try:
        yield path
    finally:
        remove_tree(path)


def stage(tmp: Path, spec: ContainerSpec) -> Staging:
    """Create the scratch dirs and the /etc/hosts and /etc/resolv.conf to bind in ``tmp``."""
    staging = Staging(tmp / "root", tmp / "empty", tmp / "hosts", tmp / "resolv.conf")
    staging.root.mkdir()
    staging.empty.mkdir()
    hosts = spec.hosts or (
        f"127.0.0.1\tlocalhost {spec.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    _write_readable(staging.hosts, hosts)
    _write_readable(staging.resolv, spec.resolv_conf or _host_resolv_conf())
    return staging


def _write_readable(path: Path, text: str) -> None:
    """Write ``text``; mode 0644 so every container user can read the bound file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o644)  # regardless of umask
        f.write(text)


def _host_resolv_conf() -> str:
    try:
        return Path("/etc/resolv.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def setup_root(spec: ContainerSpec, staging: Staging, report: Report) -> None:
    """New namespaces, overlay root with /proc /dev /sys, mounts, hosts, resolv.conf.

    Every mount point created in the upper dir is reported at once as ``{"stub": ...}``,
    so the caller removes it even when a later step fails.
    """
    if spec.network == "netns":  # before the mount namespace: the file is the caller's
        linux.setns(spec.netns, linux.CLONE_NEWNET)
    network = linux.CLONE_NEWNET if spec.network == "none" else 0
    linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | network)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)  # nothing leaks to the host
    root = staging.root
    # nodev everywhere the container can write (docker gets the same from its device
    # cgroup): with CAP_MKNOD it may make device nodes, but never open one, e.g. a node
    # for the host's disk. The nodes bound into /dev are mounts of their own and work.
    locked = not spec.privileged
    _mount_root(spec, staging, locked=locked)
    point = _MountPoints(root, spec.rootfs.upper, report)
    mount_proc(point("/proc", True))
    console = os.ttyname(0) if spec.tty else None
    populate_dev(point("/dev", True), console, nodev=locked, shm_size=spec.shm_size)
    mount_sys(point("/sys", True))
    mounts: list[BindMount | TmpfsMount] = [*spec.mounts, *spec.tmpfs]
    _bind_etc_files(staging, point, user_targets={m.target.rstrip("/") for m in mounts})
    _mount_user_mounts(mounts, point, locked=locked)
    try:
        resolve_in_root(root, spec.cwd).mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create working directory {spec.cwd}: {exc.strerror}") from exc
    linux.sethostname(spec.hostname)
    if spec.network == "none":
        linux.set_link_up("lo")
    if locked:
        mask_paths(root)
    if spec.readonly_rootfs:
        remount_readonly(root)


@dataclass(frozen=True)
class _MountPoints:
    """Makes mount points inside ``root``; each stub it creates in the upper dir is
    reported at once, so a later failure still gets it cleaned."""

    root: Path
    upper: Path
    report: Report

    def __call__(self, target: str, is_dir: bool) -> Path:
        path, stub = make_mountpoint(self.root, target, is_dir=is_dir, upper=self.upper)
        if stub is not None:
            self.report({"stub": {"paths": list(stub.paths), "is_dir": stub.is_dir}})
        return path


def _mount_root(spec: ContainerSpec, staging: Staging, *, locked: bool) -> None:
    """The root: a bind of the staged copy when there is one, else the overlay."""
    if staging.copy_root is not None:
        bind(str(staging.copy_root), staging.root, nodev=locked)
    else:
        nodev = linux.MS_NODEV if locked else 0
        mount_overlay(spec.rootfs, staging.root, empty_lower=staging.empty, flags=nodev)


def _bind_etc_files(staging: Staging, point: _MountPoints, *, user_targets: set[str]) -> None:
    """/etc/hosts and /etc/resolv.conf from the staging dir, unless a user mount is there."""
    for target, source in (("/etc/hosts", staging.hosts), ("/etc/resolv.conf", staging.resolv)):
        if target not in user_targets:
            bind(str(source), point(target, False), recursive=False)


def _mount_user_mounts(
    mounts: list[BindMount | TmpfsMount], point: _MountPoints, *, locked: bool
) -> None:
    """The user's bind and tmpfs mounts; parents before children, so a nested target
    lands inside its parent mount."""
    for mount in sorted(mounts, key=_depth):
        if isinstance(mount, TmpfsMount):
            _mount_tmpfs(mount, point(mount.target, True))
            continue
        if not os.path.exists(mount.source):
            raise SandboxError(f"bind mount source {mount.source} does not exist")
        where = point(mount.target, mount.source.is_dir())
        bind(str(mount.source), where, readonly=mount.readonly, nodev=locked)


def _depth(mount: BindMount | TmpfsMount) -> int:
    return mount.target.rstrip("/").count("/")


def _mount_tmpfs(mount: TmpfsMount, target: Path) -> None:
    options = f"mode={mount.mode:o}"
    if mount.size is not None:
        options += f",size={mount.size}"
    flags = linux.MS_NOSUID | linux.MS_NODEV
    linux.mount("tmpfs", str(target), "tmpfs", flags, options)


def mask_paths(root: Path) -> None:
    """Hide :data:`MASKED_PATHS` and make :data:`READONLY_PATHS` read-only under ``root``.

    Paths the kernel does not have are skipped, as runc does. Without CAP_SYS_ADMIN the
    container cannot unmount these covers again. Files are covered with the container's
    own /dev/null (made by ``populate_dev``), read-only; the host's, read-only, only when
    a mount of the user's hid it (read-only: no chmod, chown or touch reaches it).
    """
    null = resolve_in_root(root, "/dev/null")
    if not os.path.exists(null):
        null = Path("/dev/null")
    for target in MASKED_PATHS:
        path = resolve_in_root(root, target)
        if not os.path.lexists(path):
            continue
        if path.is_dir():
            flags = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
            linux.mount("tmpfs", str(path), "tmpfs", flags, "size=0,mode=755")
        else:
            bind(str(null), path, readonly=True, recursive=False)
    for target in READONLY_PATHS:
        path = resolve_in_root(root, target)
        if not os.path.lexists(path):
            continue
        try:
            bind(str(path), path, readonly=True)
        except SyscallError as exc:
            raise SandboxError(f"cannot make {target} read-only: {exc.message}") from exc


def pivot(root: Path) -> None:
    """Make ``root`` the root and detach the old one: the host fs becomes unreachable."""
    os.chdir(root)
    linux.pivot_root(".", ".")  # stacks the old root on top of the new one at "/"
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")
