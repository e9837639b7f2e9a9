"""Container paths as text: the one normal form every step spec holds.

Pure string work, shared by the planner (``--mount`` targets) and the ops that resolve
the paths on a rootfs (``builder.ops.rootpath``).
"""

from __future__ import annotations

import posixpath


def clean(path: str) -> str:
    """An absolute, normalised container path (``a/../b`` -> ``/b``, ``//x`` -> ``/x``).

    POSIX ``normpath`` keeps exactly two leading slashes, so they are stripped first.
    """
    return posixpath.normpath("/" + path.lstrip("/"))
