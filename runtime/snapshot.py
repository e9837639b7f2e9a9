"""The copy-based snapshotter: an overlay upper dir made without mounting overlayfs.

Where overlayfs cannot be mounted (old kernels, user namespaces before Linux 5.11, or
``PYBUILD_SNAPSHOTTER=copy``), the lowers are merged by copying into a fresh dir next to
the upper (``<work>/merged``), the container runs on a bind mount of it, and afterwards
the tree is compared with the state right after the copy to write the upper dir that
overlayfs would have left: changed and new entries with their parent dirs, a 0/0 char
device for each deleted path, and a dir made opaque (``user.overlay.opaque`` or
``trusted.overlay.opaque``) where a dir replaced something. The layer snapshot therefore
gives the same tar in both modes.

Change detection uses the inode number and ctime of every entry: any write, chmod,
chown, rename, link or xattr change moves ctime (inode(7)), which is when overlayfs would
copy an entry up. Known difference: opening a file for writing without changing it copies
it up under overlayfs but is invisible here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fstree import whiteout
from fstree.tree import remove_tree, short_path, walk
from runtime import warmcopies
from runtime.errors import SandboxError, os_error_hint
from runtime.snapshotter import is_opaque, is_whiteout, visible_lowers
from runtime.spec import Rootfs

OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
MERGED_NAME = "merged"
CLOCK_TICK = 0.02  # seconds; above a 250 Hz jiffy


@dataclass(frozen=True)
class Baseline:
    """One entry of the merged tree right after copying: its inode and change time."""

    ino: int
    ctime_ns: int
    is_dir: bool
    # Also compared, in case a change lands in the same clock tick as the copy.
    detail: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    nlink: int = 1


@dataclass(frozen=True)
class CopyRoot:
    """A merged copy of a rootfs at ``merged`` and the state to diff it against."""

    merged: Path
    baseline: Mapping[str, Baseline]
    # O_PATH fds of the baseline's dirs: while open, a removed dir's inode number cannot
    # be given to a new dir at the same path, which would hide that it was replaced.
    # Emptied when they are closed, so they are closed once.
    pins: list[int] = field(default_factory=list)
    # Paths (relative) the diff leaves out with all below them: what a sandbox without
    # mounts puts in the copy in place of its mounts (/dev, /etc/hosts, ...).
    private: frozenset[str] = frozenset()


def prepare(
    rootfs: Rootfs,
    seed: Callable[[Path], None] | None = None,
    private: frozenset[str] = frozenset(),
    *,
    warm: bool = False,
) -> CopyRoot:
    """Merge ``rootfs`` (lowers, then what the upper already holds) into
    ``<work>/merged`` and record the baseline the final diff is made against.

    ``seed`` is called on the merged tree before the baseline is taken, so what it
    writes is no change; the diff leaves out the paths in ``private`` and all below them.
    ``warm``: take the tree a previous step parked for exactly these lowers
    (:mod:`runtime.warmcopies`) instead of copying them, if there is one.
    """
    merged = rootfs.work / MERGED_NAME
    remove_tree(merged)
    try:
        stack = warmcopies.identity(rootfs.lowers) if warm else None
        reused = warmcopies.take(stack, merged)
        if reused is not None:
            _restore(rootfs.lowers, str(merged), reused.restore)
        else:
            merged.mkdir()
            for lower in reversed(visible_lowers(rootfs.lowers)):  # bottom-most first
                _apply(str(lower), str(merged))
        if seed is not None:
            seed(merged)
        baseline = {rel: _baseline(st) for rel, st in _scan(str(merged))}
        pins = _pin_dirs(merged, baseline)
        _apply(str(rootfs.upper), str(merged))
        _copy_meta(str(rootfs.upper), str(merged), os.stat(rootfs.upper))
    except OSError as exc:
        remove_tree(merged, ignore_errors=True)
        raise SandboxError(
            f"cannot copy the root filesystem into {merged}: {_describe(exc)}",
            hint=os_error_hint(exc, merged),
        ) from None
    # ctime comes from a coarse clock: let it tick, so a change right after the copy
    # cannot carry the same ctime as the copy itself.
    time.sleep(CLOCK_TICK)
    return CopyRoot(merged, baseline, pins, private)


def _restore(lowers: Iterable[Path], merged: str, paths: frozenset[str]) -> None:
    """Make ``paths`` in a reused tree (what its last user put there in place of mounts,
    and anything it wrote below them) what the layers hold, parents' metadata too, as
    a fresh copy of ``lowers`` would have them."""
    visible = [str(lower) for lower in visible_lowers(lowers)]
    parents: set[str] = set()
    for rel in sorted(paths):
        target = os.path.join(merged, rel)
        if os.path.lexists(target):
            _remove(target)
        parent = os.path.dirname(target)
        if os.path.isdir(parent) and not os.path.islink(parent):
            parents.add(os.path.dirname(rel))
            for lower in reversed(visible):  # bottom-most first, as prepare applies them
                _restore_from(lower, rel, target)
    for rel in parents:  # removing and making entries moved their times
        for lower in visible:  # the top-most layer holding the dir has its metadata
            source = os.path.join(lower, rel)
            if os.path.isdir(source) and not os.path.islink(source):
                _copy_meta(source, os.path.join(merged, rel), os.lstat(source))
                break


def _restore_from(lower: str, rel: str, target: str) -> None:
    """Apply what the layer ``lower`` holds at ``rel`` onto ``target``."""
    if _hides_below(lower, rel) and os.path.lexists(target):
        _remove(target)
    source = os.path.join(lower, rel)
    st = _lstat(source)
    if st is None:
        return
    existing = _lstat(target)
    merge = (
        existing is not None
        and stat.S_ISDIR(existing.st_mode)
        and stat.S_ISDIR(st.st_mode)
        and not is_opaque(source)
    )
    if existing is not None and not merge:
        _remove(target)
    if is_whiteout(source, st):
        return
    if stat.S_ISDIR(st.st_mode):
        if not merge:
            os.mkdir(target, 0o700)
        _apply(source, target)
        _copy_meta(source, target, st)
    else:
        _copy_entry(source, target, st, {})


def _hides_below(lower: str, rel: str) -> bool:
    """Whether ``lower`` hides what the layers below it hold at ``rel``: a parent of it
    there is a whiteout, no dir, or an opaque dir."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        path = os.path.join(lower, *parts[:i])
        st = _lstat(path)
        if st is None:
            return False
        if not stat.S_ISDIR(st.st_mode) or is_opaque(path):
            return True
    return False


def _pin_dirs(merged: Path, baseline: Mapping[str, Baseline]) -> list[int]:
    dirs = [rel for rel, b in baseline.items() if b.is_dir]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(dirs) + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    pins: list[int] = []
    try:
        for rel in dirs:
            pins.append(os.open(merged / rel, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW))
    except OSError:
        _unpin(pins)
        raise
    return pins


def _unpin(pins: list[int]) -> None:
    """Close the pins, once: the list is emptied."""
    while pins:
        with contextlib.suppress(OSError):
            os.close(pins.pop())


def _baseline(st: os.stat_result) -> Baseline:
    return Baseline(st.st_ino, st.st_ctime_ns, stat.S_ISDIR(st.st_mode), _detail(st), st.st_nlink)


def _changed(before: Baseline, st: os.stat_result) -> bool:
    """Whether overlayfs would have copied this entry up. Only the link count moving
    (another name of the same file made or removed) is not a change of this entry."""
    if before.detail != _detail(st):
        return True
    if before.ctime_ns == st.st_ctime_ns:
        return False
    return before.is_dir or before.nlink == st.st_nlink


def _detail(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_mode, st.st_uid, st.st_gid)


def finish(rootfs: Rootfs, copy: CopyRoot, *, warm: bool = False) -> None:
    """Replace the contents of the upper dir with the diff of the merged copy against its
    baseline, then delete the copy, or with ``warm`` park it for a next step on top of
    this one (:mod:`runtime.warmcopies`; deleted when no pool is open)."""
    try:
        for entry in os.scandir(rootfs.upper):
            _remove(entry.path)
        if _write_diff(str(copy.merged), copy.baseline, str(rootfs.upper), copy.private):
            whiteout.mark(rootfs.upper)
    except OSError as exc:
        discard(copy)
        raise SandboxError(
            f"cannot write the changes of {copy.merged} to {rootfs.upper}: {_describe(exc)}",
            hint=os_error_hint(exc, rootfs.upper),
        ) from None
    _unpin(copy.pins)
    if warm:
        stack = warmcopies.identity((rootfs.upper, *rootfs.lowers))
        if warmcopies.park(copy.merged, stack, copy.private):
            return
    discard(copy)


def discard(copy: CopyRoot) -> None:
    """Delete the merged copy without keeping its changes (again: a no-op)."""
    _unpin(copy.pins)
    remove_tree(copy.merged, ignore_errors=True)  # what is left goes with the step dir


def _describe(exc: OSError) -> str:
    name = f": {short_path(exc.filename)}" if exc.filename else ""
    return f"{exc.strerror or exc}{name}"


def _scan(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``root`` as (relative path, lstat), parents before children,
    siblings sorted; iterative and fd-relative, so any depth is walked."""
    return walk(root)


def _apply(src: str, dst: str) -> None:
    """Apply the overlay-form layer dir ``src`` onto the plain tree ``dst``."""
    links: dict[tuple[int, int], str] = {}
    for rel, st in _scan(src):
        source, target = os.path.join(src, rel), os.path.join(dst, rel)
        if not os.path.isdir(os.path.dirname(target)) or os.path.islink(os.path.dirname(target)):
            continue  # below a whiteout or a non-dir that replaced the dir: hidden
        existing = _lstat(target)
        if is_whiteout(source, st):
            if existing is not None:
                _remove(target)
            continue
        if stat.S_ISDIR(st.st_mode):
            if existing is not None and (not stat.S_ISDIR(existing.st_mode) or is_opaque(source)):
                _remove(target)
                existing = None
            if existing is None:
                os.mkdir(target, 0o700)
            continue
        if existing is not None:
            _remove(target)
        _copy_entry(source, target, st, links)
    _dir_meta(src, dst)


def _dir_meta(src: str, dst: str) -> None:
    """Copy dir metadata deepest first (adding children moved the mtimes)."""
    dirs = [rel for rel, st in _scan(src) if stat.S_ISDIR(st.st_mode)]
    for rel in reversed(dirs):
        target = os.path.join(dst, rel)
        if os.path.isdir(target) and not os.path.islink(target):
            source = os.path.join(src, rel)
            _copy_meta(source, target, os.stat(source, follow_symlinks=False))


def _write_diff(
    merged: str, baseline: Mapping[str, Baseline], upper: str, private: frozenset[str]
) -> bool:
    """Write the upper dir; True when a whiteout is in the xattr form."""
    final = {rel: st for rel, st in _scan(merged) if not _is_private(rel, private)}
    fresh: list[str] = []  # dirs that are new or replaced: everything below them is new
    wanted: dict[str, str] = {}  # rel -> "copy" | "opaque" | "dir"
    for rel, st in final.items():
        before = baseline.get(rel)
        is_dir = stat.S_ISDIR(st.st_mode)
        if any(rel.startswith(d + "/") for d in fresh):
            wanted[rel] = "dir" if is_dir else "copy"
        elif before is None or before.ino != st.st_ino:
            if is_dir:
                fresh.append(rel)
                wanted[rel] = "opaque" if before is not None else "dir"
            else:
                wanted[rel] = "copy"
        elif _changed(before, st):
            wanted[rel] = "dir" if is_dir else "copy"
    for rel in baseline:
        if rel in final or _is_private(rel, private):
            continue
        parent = os.path.dirname(rel)
        if parent and (parent not in final or baseline[parent].ino != final[parent].st_ino):
            continue  # the parent went or was replaced: its own whiteout or opaque covers it
        wanted[rel] = "whiteout"
    return _materialise(merged, final, wanted, upper)


def _is_private(rel: str, private: frozenset[str]) -> bool:
    if not private:
        return False
    parts = rel.split("/")
    return any("/".join(parts[:i]) in private for i in range(1, len(parts) + 1))


def _materialise(
    merged: str, final: Mapping[str, os.stat_result], wanted: Mapping[str, str], upper: str
) -> bool:
    links: dict[tuple[int, int], str] = {}
    dirs: set[str] = set()
    xattr_form = False
    for rel in sorted(wanted):
        parts = rel.split("/")
        for i in range(1, len(parts)):  # parent dirs, as overlayfs copies them up
            parent = "/".join(parts[:i])
            if parent not in dirs:
                os.mkdir(os.path.join(upper, parent), 0o700)
                dirs.add(parent)
        target = os.path.join(upper, rel)
        kind = wanted[rel]
        if kind == "whiteout":
            xattr_form |= _whiteout(target, rel, upper)
            continue
        st = final[rel]
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(target, 0o700)
            dirs.add(rel)
            if kind == "opaque":
                _set_opaque(target)
        else:
            _copy_entry(os.path.join(merged, rel), target, st, links)
    for rel in sorted(dirs, key=lambda r: r.count("/"), reverse=True):
        source = os.path.join(merged, rel)
        _copy_meta(source, os.path.join(upper, rel), final[rel])
    return xattr_form


def _whiteout(target: str, rel: str, upper: str) -> bool:
    """Record the deletion of ``rel`` as overlayfs would (a 0/0 char device, mode 0),
    or in the xattr form where the filesystem refuses that; True for the xattr form."""
    parent = os.open(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return whiteout.make(os.path.basename(target), parent)
    except OSError as exc:
        raise SandboxError(
            f"cannot record that /{rel} was deleted in {short_path(upper)}: {_describe(exc)}",
            hint="the store's filesystem refuses both a 0/0 character device and a user "
            "xattr: put the store (PYBUILD_ROOT) on another filesystem",
        ) from None
    finally:
        os.close(parent)


def _set_opaque(path: str) -> None:
    """Mark ``path`` opaque as overlayfs would: trusted.* as host root, user.* otherwise."""
    try:
        os.setxattr(path, "trusted.overlay.opaque", b"y")
    except PermissionError:
        os.setxattr(path, "user.overlay.opaque", b"y")


def _copy_entry(src: str, dst: str, st: os.stat_result, links: dict[tuple[int, int], str]) -> None:
    """Copy one non-dir entry with its metadata; hard links stay links."""
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and key in links:
        os.link(links[key], dst, follow_symlinks=False)
        return
    mode = st.st_mode
    if stat.S_ISREG(mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(dst, 0o600)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        try:
            os.mknod(dst, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        except PermissionError:
            return  # not permitted here (user namespace): skipped, as extraction does
    else:
        return  # sockets are not part of a layer
    _copy_meta(src, dst, st)
    if st.st_nlink > 1:
        links[key] = dst


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    """Owner, mode, xattrs (not overlayfs's own) and times of ``src`` onto ``dst``."""
    is_link = stat.S_ISLNK(st.st_mode)
    try:
        os.lchown(dst, st.st_uid, st.st_gid)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EPERM):
            raise  # EINVAL: an id this user namespace does not map; it stays ours
    if not is_link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        names = []
    for name in names:
        if name.startswith(OVERLAY_XATTR_PREFIXES):
            continue
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError:
            continue  # not permitted here (e.g. trusted.* rootless): skipped
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove(path: str) -> None:
    remove_tree(path)
