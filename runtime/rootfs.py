"""Overlay roots and the mount points a container needs inside them.

Used from two sides: the builder mounts an overlay to write into it (COPY, ADD, WORKDIR)
through :func:`mounted_overlay`; ``runtime.init`` builds the container's root with
:func:`mount_overlay`, :func:`make_mountpoint`, and the /proc and /sys helpers (/dev is
:mod:`runtime.devices`). Mount
points we had to create are recorded as :class:`MountStub` so they can be taken out of the
upper dir again (:func:`remove_stubs`): a ``RUN true`` must not change the layer.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from fstree import whiteout
from runtime import linux, snapshotter
from runtime.errors import SandboxError, SyscallError
from runtime.spec import Rootfs
from runtime.userns import in_initial_namespace

# Docker's choices: no inode index or redirects, so layers stay plain directory diffs that
# a tar snapshot of the upper dir captures exactly (overlayfs.rst, "Sharing and copying").
OVERLAY_EXTRA_OPTIONS = "index=off,redirect_dir=off,metacopy=off"
USERNS_OVERLAY_EXTRA_OPTIONS = "index=off,redirect_dir=nofollow,metacopy=off"
# Linux 5.10+: no sync of the upper filesystem, not even the whole-filesystem one
# overlayfs does at unmount (a step's COPY of 15,000 files waited ~0.2 s for it).
VOLATILE_OPTION = "volatile"
# mount(2) copies at most one page of option data.
MOUNT_DATA_LIMIT = 4000
MAX_SYMLINKS = 40


@dataclass(frozen=True)
class MountStub:
    """Paths (relative to the root, shallowest first) absent from the upper dir before we
    created a mount point; the last one is the mount point itself."""

    paths: tuple[str, ...]
    is_dir: bool


def overlay_supported() -> bool:
    """True when the kernel lists overlayfs (it may still refuse a given upper filesystem)."""
    try:
        with open("/proc/filesystems", encoding="ascii") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


def use_copy_snapshotter(rootfs: Rootfs | None = None) -> bool:
    """True when roots are copies (:mod:`runtime.snapshot`) rather than overlay mounts:
    ``PYBUILD_SNAPSHOTTER=copy``, or ``auto`` (the default) where overlayfs is missing or,
    in a user namespace, the kernel predates ``userxattr`` (Linux 5.11), or for a
    ``rootfs`` whose upper dir is on overlayfs (a store on a container's own root: not
    a valid upper) or a lower of which records deletions in the xattr form
    (:mod:`fstree.whiteout`), which a rootful overlay mount would show as empty files."""
    usable = overlay_supported() and (in_initial_namespace() or _kernel_at_least(5, 11))
    if rootfs is not None and (
        linux.filesystem_type(str(rootfs.upper)) == linux.OVERLAYFS_SUPER_MAGIC
        or any(whiteout.marked(lower) for lower in rootfs.lowers)
    ):
        usable = False
    env = os.environ.get(snapshotter.SNAPSHOTTER_ENV)
    return snapshotter.choose(env, overlay_usable=usable) == "copy"


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        numbers = os.uname().release.split("-")[0].split(".")
        return (int(numbers[0]), int(numbers[1])) >= (major, minor)
    except (ValueError, IndexError):
        return False


@contextmanager
def mounted_overlay(rootfs: Rootfs, target: Path, *, mounts: bool = True) -> Iterator[Path]:
    """Mount ``rootfs`` at ``target`` (an existing dir), yield it, unmount on exit.

    The unmount is lazy when the mount is still busy, so leaving the block never fails
    because of a stray open file. With the copy snapshotter, ``target`` is a bind mount
    of a merged copy whose changes are written to the upper dir on a normal exit.
    Without ``mounts`` (a process that may not mount: chroot isolation) nothing is
    mounted: the merged copy itself is yielded, not ``target``, and it is kept for a next
    step on top of this one (:mod:`runtime.warmcopies`).
    """
    import tempfile  # not loaded by runtime.init (the fork server), which needs none of this

    from runtime import snapshot  # the copy snapshotter

    if not mounts:
        merged = snapshot.prepare(rootfs, warm=True)
        try:
            yield merged.merged
            snapshot.finish(rootfs, merged, warm=True)
        finally:
            snapshot.discard(merged)
        return
    with ExitStack() as stack:
        copy = None
        if use_copy_snapshotter(rootfs):
            copy = snapshot.prepare(rootfs)
            stack.callback(snapshot.discard, copy)
            bind(str(copy.merged), target)
        else:
            empty_dir = tempfile.TemporaryDirectory(prefix="pybuild-empty-", dir=target.parent)
            empty = Path(stack.enter_context(empty_dir))
            mount_overlay(rootfs, target, empty_lower=empty)
        try:
            yield target
            if copy is not None:
                _unmount(target)
                snapshot.finish(rootfs, copy)
        finally:
            if copy is None or os.path.ismount(target):
                _unmount(target)


def _unmount(target: Path) -> None:
    try:
        linux.umount2(str(target))
    except SyscallError as exc:
        if exc.errno != errno.EBUSY:
            raise
        linux.umount2(str(target), linux.MNT_DETACH)


def mount_overlay(rootfs: Rootfs, target: Path, *, empty_lower: Path, flags: int = 0) -> None:
    """Mount the overlay of ``rootfs`` at ``target``.

    ``empty_lower`` (an empty dir) stands in when there are no lowers, as overlayfs needs
    at least one. Lowers below one with an opaque root are left out. A volatile rootfs
    is mounted ``volatile``. Falls back to fewer options on kernels that reject some:
    without ``volatile`` (before Linux 5.10), then plain.
    """
    lowers = [str(p) for p in snapshotter.visible_lowers(rootfs.lowers)] or [str(empty_lower)]
    with _short_paths([*lowers, str(rootfs.upper), str(rootfs.work)]) as paths:
        base = "lowerdir={},upperdir={},workdir={}".format(
            ":".join(_escape(p) for p in paths[:-2]), _escape(paths[-2]), _escape(paths[-1])
        )
        extra = OVERLAY_EXTRA_OPTIONS
        if not in_initial_namespace():
            # Rootless: overlayfs keeps its metadata in user.overlay.* xattrs, which
            # refuses redirect_dir=off ("follow"): nofollow neither makes nor follows them.
            base += ",userxattr"
            extra = USERNS_OVERLAY_EXTRA_OPTIONS
        tries = [f"{base},{extra}", base]
        if rootfs.volatile:
            tries.insert(0, f"{base},{extra},{VOLATILE_OPTION}")
        for options in tries:
            try:
                linux.mount("overlay", str(target), "overlay", flags, options)
                return
            except SyscallError as exc:
                if exc.errno != errno.EINVAL or options == base:
                    raise _overlay_error(exc) from exc


def _overlay_error(exc: SyscallError) -> SyscallError:
    exc.hint = exc.hint or (
        "the lower dirs must exist; upper and work must be on one filesystem that can hold "
        "an overlay upper (not overlayfs itself), and work must be empty; where overlayfs "
        "cannot work, PYBUILD_SNAPSHOTTER=copy uses copies instead"
    )
    return exc


def _escape(path: str) -> str:
    """Escape the separators overlayfs splits its options on."""
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


@contextmanager
def _short_paths(paths: list[str]) -> Iterator[list[str]]:
    """Yield ``paths``, or ``/proc/self/fd/N`` aliases when they would overflow the page
    of option data mount(2) accepts (many layers with long store paths)."""
    if sum(len(p) + 1 for p in paths) < MOUNT_DATA_LIMIT - 100:
        yield paths
        return
    fds: list[int] = []
    try:
        for p in paths:
            fds.append(os.open(p, os.O_PATH | os.O_DIRECTORY))
        yield [f"/proc/self/fd/{fd}" for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


def resolve_in_root(root: Path, path: str) -> Path:
    """Join ``path`` to ``root`` resolving symlinks as if ``root`` were ``/``.

    Links (absolute or through ``..``) can never lead out of ``root``. Components that do
    not exist are kept as they are, so the result may not exist.
    """
    pending = [p for p in path.split("/") if p not in ("", ".")]
    pending.reverse()
    resolved: list[str] = []
    links = 0
    while pending:
        name = pending.pop()
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        try:
            link = os.readlink(root.joinpath(*resolved, name))
        except OSError:  # not a link, or does not exist: take the name as it is
            resolved.append(name)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise SandboxError(f"too many levels of symbolic links resolving {path} in {root}")
        if link.startswith("/"):
            resolved = []
        pending.extend(reversed([p for p in link.split("/") if p not in ("", ".")]))
    return root.joinpath(*resolved)


def make_mountpoint(
    root: Path, target: str, *, is_dir: bool, upper: Path | None
) -> tuple[Path, MountStub | None]:
    """Resolve ``target`` inside ``root``, creating it (and parents) when missing.

    Returns the host path to mount on and, when something was created, the stub record
    of what was absent from ``upper`` before (None when ``upper`` is None: not an overlay
    root, e.g. inside /dev's tmpfs).
    """
    resolved = resolve_in_root(root, target)
    if os.path.lexists(resolved):
        return resolved, None
    parts = resolved.relative_to(root).parts
    stub = None
    if upper is not None:
        absent = [
            "/".join(parts[:i])
            for i in range(1, len(parts) + 1)
            if not os.path.lexists(upper.joinpath(*parts[:i]))
        ]
        stub = MountStub(tuple(absent), is_dir)
    try:
        resolved.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if is_dir:
            resolved.mkdir(mode=0o755)
        else:
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
            os.close(os.open(resolved, flags, 0o644))
    except OSError as exc:
        raise SandboxError(f"cannot create mount point {target}: {exc.strerror}") from exc
    return resolved, stub


def remove_stubs(rootfs: Rootfs, stubs: Sequence[MountStub]) -> None:
    """Take the mount points recorded in ``stubs`` out of the upper dir again.

    Only what still looks like our stub goes: an empty regular file or an empty dir whose
    owner and mode match the lower copy it was copied up from (a ``chmod`` by the container
    is a real change and stays). Never follows symlinks in the upper dir.
    """
    for stub in reversed(stubs):
        for depth, rel in enumerate(reversed(stub.paths)):
            _remove_one(rootfs, rel, file_stub=depth == 0 and not stub.is_dir)


def _remove_one(rootfs: Rootfs, rel: str, *, file_stub: bool) -> None:
    *parents, name = rel.split("/")
    try:
        dir_fd = os.open(rootfs.upper, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        for part in parents:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if file_stub and stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(name, dir_fd=dir_fd)
        elif stat.S_ISDIR(st.st_mode) and _same_as_lower(
            snapshotter.visible_lowers(rootfs.lowers), rel, st
        ):
            os.rmdir(name, dir_fd=dir_fd)
    except OSError:  # gone, replaced, or not empty: the container changed it, keep it
        pass
    finally:
        os.close(dir_fd)


def _same_as_lower(lowers: Sequence[Path], rel: str, st: os.stat_result) -> bool:
    """True when no lower has ``rel`` or the top-most one has the same owner and mode."""
    for lower in lowers:
        try:
            below = os.stat(lower / rel, follow_symlinks=False)
        except OSError:
            continue
        return (below.st_mode, below.st_uid, below.st_gid) == (st.st_mode, st.st_uid, st.st_gid)
    return True


def bind(
    source: str,
    target: Path,
    *,
    readonly: bool = False,
    recursive: bool = True,
    nodev: bool = False,
) -> None:
    """Bind-mount ``source`` on ``target``; read-only or nodev needs a second, remounting
    call (which affects the top mount only, not submounts of a recursive bind)."""
    flags = linux.MS_BIND | (linux.MS_REC if recursive else 0)
    linux.mount(source, str(target), None, flags)
    extra = (linux.MS_RDONLY if readonly else 0) | (linux.MS_NODEV if nodev else 0)
    if extra:
        remount_bind(target, extra)


def remount_readonly(target: Path) -> None:
    """Make the mount at ``target`` read-only, keeping its other flags."""
    remount_bind(target, linux.MS_RDONLY)


def remount_bind(target: Path, extra: int) -> None:
    """Add the ``MS_*`` flags ``extra`` to the mount at ``target``, keeping its nosuid,
    nodev, noexec, read-only and atime flags (dropping a locked flag would be refused)."""
    kept = os.statvfs(target).f_flag
    flags = linux.MS_REMOUNT | linux.MS_BIND | extra
    for st_flag, ms_flag in (
        (os.ST_RDONLY, linux.MS_RDONLY),
        (os.ST_NOSUID, linux.MS_NOSUID),
        (os.ST_NODEV, linux.MS_NODEV),
        (os.ST_NOEXEC, linux.MS_NOEXEC),
        (os.ST_NOATIME, linux.MS_NOATIME),
        (os.ST_NODIRATIME, linux.MS_NODIRATIME),
        (os.ST_RELATIME, linux.MS_RELATIME),
    ):
        if kept & st_flag:
            flags |= ms_flag
    linux.mount(None, str(target), None, flags)


def mount_proc(target: Path) -> None:
    """A new procfs: it shows the PID namespace of the calling process."""
    linux.mount("proc", str(target), "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def mount_sys(target: Path) -> None:
    """Read-only sysfs; a read-only recursive bind of the host's when sysfs is refused."""
    flags = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    try:
        linux.mount("sysfs", str(target), "sysfs", flags)
    except SyscallError:
        bind("/sys", target, readonly=True)
