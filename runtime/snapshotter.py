"""Which snapshotter makes a root, and how both snapshotters read a stack of lowers.

``PYBUILD_SNAPSHOTTER`` picks an overlayfs mount or a copy (:mod:`runtime.snapshot`);
either way a lower's root dir may be opaque (hiding the lowers below it) and a layer
records deletions as whiteouts. Kept apart from the copy snapshotter itself so that
what every sandbox reads (``runtime.rootfs``, the fork server's inits) does not load it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from fstree import whiteout
from runtime.errors import SandboxError

SNAPSHOTTER_ENV = "PYBUILD_SNAPSHOTTER"
SNAPSHOTTERS = ("auto", "overlay", "copy")
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def choose(value: str | None, *, overlay_usable: bool) -> str:
    """``overlay`` or ``copy`` for the ``PYBUILD_SNAPSHOTTER`` value ``value``.

    ``auto`` (or unset) picks overlay when ``overlay_usable``; raises SandboxError for
    an unknown value.
    """
    choice = (value or "auto").strip().lower()
    if choice not in SNAPSHOTTERS:
        raise SandboxError(
            f"{SNAPSHOTTER_ENV}={value!r} is not one of {', '.join(SNAPSHOTTERS)}",
            hint=f"unset {SNAPSHOTTER_ENV}, or set it to overlay or copy",
        )
    if choice == "auto":
        return "overlay" if overlay_usable else "copy"
    return choice


def visible_lowers(lowers: Iterable[Path]) -> tuple[Path, ...]:
    """``lowers`` (top-most first) down to the first one whose root dir is opaque.

    A layer with ``.wh..wh..opq`` at its root hides every layer below it (image-spec
    layer.md, "Opaque Whiteout"); overlayfs honours the opaque mark on subdirectories
    only, never on a lower's root, so the layers it hides are left out of the stack.
    """
    kept: list[Path] = []
    for lower in lowers:
        kept.append(lower)
        if is_opaque(str(lower)):
            break
    return tuple(kept)


def is_whiteout(path: str | Path, st: os.stat_result) -> bool:
    """A deletion in a layer dir: an overlayfs whiteout, in either of its forms."""
    return whiteout.is_whiteout(path, st)


def is_opaque(path: str | Path) -> bool:
    """An overlayfs opaque directory (either xattr namespace)."""
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False
