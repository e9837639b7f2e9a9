"""The store root: created private to its owner, and checked to be so on every open.

Unpacked layers are real files on the host: setuid-root programs and device nodes from
images sit under ``<root>/layers``, and ``index.db`` holds build-arg values and step
inputs. So nothing under the root may be reachable by other users, whatever the umask
or ``PYBUILD_ROOT``: the root is mode 0700 (0710, docker's ``/var/lib/docker`` mode, is
accepted too) and owned by the user running pybuild. Directory modes below the root
then do not matter: nobody else can get past it.

``prepare_root`` decides, before anything is written under the root:

- missing: created 0700 (missing parents 0755 at most, whatever the umask);
- owned by another user: refused (their store is theirs; root is no exception, as a
  store another user controls could hand root planted files);
- private already: used as it is, whatever it holds;
- wider, and empty or a pybuild store: made 0700 (``RootState.widened_mode`` says what
  it was, so the CLI can warn about an old store other users could read);
- wider, and holding files that are not a pybuild store: refused, unchanged. pybuild
  never changes the mode of a directory it cannot tell is its own.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cache.errors import CacheError

PRIVATE_MODE = 0o700
# Bits other users may hold on the root: group search only (docker's 0710).
_ALLOWED_OTHERS = 0o010
_PARENT_MODE = 0o755


class StoreRootError(CacheError):
    """The store root cannot be used safely (wrong owner, or a wide unrelated directory)."""


@dataclass(frozen=True)
class RootState:
    """What ``prepare_root`` found and did."""

    path: Path
    created: bool  # the root did not exist and was made 0700
    widened_mode: int | None = None  # a store's former wide mode, now 0700; else None


def is_private(mode: int) -> bool:
    """True when permission bits ``mode`` let no other user reach below the directory."""
    return mode & 0o077 & ~_ALLOWED_OTHERS == 0


def prepare_root(root: Path, *, owner: int | None = None) -> RootState:
    """Create the store root or check it, so that only ``owner`` (default: our euid) can
    reach anything under it. Raises StoreRootError when it cannot be made so."""
    uid = os.geteuid() if owner is None else owner
    created = _create(root)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise StoreRootError(
            f"the store root {root} is not a directory",
            hint="point PYBUILD_ROOT (or --root) at a directory",
        ) from None
    except OSError as exc:
        raise StoreRootError(
            f"cannot open the store root {root}: {exc.strerror}",
            hint="point PYBUILD_ROOT (or --root) at a directory you own",
        ) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != uid:
            raise StoreRootError(
                f"the store root {root} belongs to uid {st.st_uid}, not to uid {uid} "
                "running pybuild",
                hint="each user needs a store of their own: unset PYBUILD_ROOT, or point "
                "it (or --root) at a directory you own",
            )
        mode = stat.S_IMODE(st.st_mode)
        if created or is_private(mode):
            if created and mode != PRIVATE_MODE:
                os.fchmod(fd, PRIVATE_MODE)  # a umask such as 0777 left it 0000
            return RootState(root, created)
        if _has_foreign_entries(root):
            raise StoreRootError(
                f"the store root {root} is mode {mode:04o}, so other users can reach it, "
                "and it holds files that are not a pybuild store; pybuild leaves its mode alone",
                hint="point PYBUILD_ROOT (or --root) at a new or empty directory, or make "
                f"this one private yourself (`chmod 700 {root}`) if it is meant to be the store",
            )
        os.fchmod(fd, PRIVATE_MODE)
        return RootState(root, created, None if _is_empty(root) else mode)
    finally:
        os.close(fd)


def _create(root: Path) -> bool:
    """Make the root 0700 (missing parents at most 0755); False when it existed."""
    missing: list[Path] = []
    path = root
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    try:
        for i, path in enumerate(reversed(missing)):
            last = i == len(missing) - 1
            try:
                os.mkdir(path, PRIVATE_MODE if last else _PARENT_MODE)
            except FileExistsError:
                if last:
                    return False  # another process made it meanwhile
    except OSError as exc:
        raise StoreRootError(
            f"cannot create the store at {root}: {exc.strerror}",
            hint="set PYBUILD_ROOT to a writable directory",
        ) from None
    return bool(missing)


def _is_empty(root: Path) -> bool:
    with os.scandir(root) as entries:
        return next(entries, None) is None


def _has_foreign_entries(root: Path) -> bool:
    """True when ``root`` holds something and is not recognisably a pybuild store."""
    if _is_empty(root):
        return False
    return not ((root / "index.db").is_file() or (root / "blobs" / "sha256").is_dir())


def touch_private(path: Path) -> None:
    """Create ``path`` empty and 0600 unless it exists (SQLite then gives its -wal and
    -shm files the same mode), so a database never starts out readable by others."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
