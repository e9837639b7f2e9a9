"""Paths inside a container root: resolve symlinks without ever leaving the root.

A rootfs is untrusted: ``/usr/bin -> /bin`` must resolve inside it, and
``/x -> ../../../etc`` must not reach the host. This is the ``securejoin`` idea.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from builder.errors import BuildError
from builder.plan.paths import clean

_MAX_LINKS = 40


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """The host path of container ``path`` under ``root``, following symlinks inside it.

    ``..`` never climbs above ``root``; absolute link targets are taken relative to it.
    With ``follow_last=False`` a final symlink is not followed (the link itself is meant).
    Missing components are fine: the result names where they would be.
    """
    todo = [p for p in clean(path).split("/") if p]
    todo.reverse()
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        if part == ".":
            continue
        current = root.joinpath(*done, part)
        is_last = not todo
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            done.append(part)
            continue
        except NotADirectoryError:
            raise BuildError(f"{path}: a path component is not a directory") from None
        if stat.S_ISLNK(st.st_mode) and (follow_last or not is_last):
            links += 1
            if links > _MAX_LINKS:
                raise BuildError(f"{path}: too many levels of symbolic links")
            target = os.readlink(current)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p]
            todo.extend(reversed(parts))
            continue
        done.append(part)
    return root.joinpath(*done)


def make_dirs(root: Path, host_dir: Path, mode: int, owner: tuple[int, int]) -> None:
    """Create ``host_dir`` (a result of ``resolve_in_root``) and its missing parents.

    Works on the resolved host path, as BuildKit's fileop does (``fs.RootPath`` then
    fsutil ``MkdirAll``): a symlink whose target does not exist yet, such as
    ``/link -> /opt/app``, gets ``/opt/app`` made inside the root. New directories get
    exactly ``mode`` (no umask) and ``owner``; existing ones are left as they are.
    """
    current = root
    for part in host_dir.relative_to(root).parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, mode)
            os.chmod(current, mode)
            os.chown(current, *owner)
            continue
        if not stat.S_ISDIR(st.st_mode):
            where = to_container_path(root, current)
            raise BuildError(
                f"cannot create {to_container_path(root, host_dir)}: {where} exists and is "
                "not a directory",
                hint="choose a destination that is a directory or a new path",
            )


def to_container_path(root: Path, host_path: Path) -> str:
    """The inverse of resolve_in_root for a path known to lie under ``root``."""
    rel = host_path.relative_to(root).as_posix()
    return "/" if rel == "." else "/" + rel


def resolve_beside(path: Path) -> Path:
    """``path`` with its symlinks followed only inside the directory that holds it.

    BuildKit reads the Dockerfile and its ignore files from a source rooted at their
    directory (the context, or ``-f``'s directory), so a link there never leads out of
    it: ``Dockerfile -> /etc/shadow`` means ``<dir>/etc/shadow``. The result may not
    exist; see ``leads_out`` to tell the user why.
    """
    scope = Path(os.path.realpath(path.parent))
    return resolve_in_root(scope, path.name)


def leads_out(path: Path) -> bool:
    """True when ``path`` is a symlink whose host target exists outside its directory."""
    if not path.is_symlink() or not path.exists():
        return False
    scope = os.path.realpath(path.parent)
    return os.path.commonpath([scope, os.path.realpath(path)]) != scope
