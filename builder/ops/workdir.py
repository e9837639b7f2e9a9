"""WORKDIR as an op: keyed by the path (in the instruction) and the USER; executing it
makes the missing directories, owned by that user as BuildKit does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from builder.ops.base import ExecContext
from builder.ops.rootpath import resolve_in_root
from builder.plan.specs import WorkdirSpec
from cache.keys import KeyInputs
from runtime.errors import RuntimeFailure

if TYPE_CHECKING:
    from runtime.spec import Rootfs


def key_inputs(spec: WorkdirSpec, parent: str, instruction: str, ctx: ExecContext) -> KeyInputs:
    """The WORKDIR's key inputs: the instruction and the user who will own new dirs."""
    return KeyInputs(parent=parent, instruction=instruction, env=(), extra=(("user", spec.user),))


def execute(spec: WorkdirSpec, rootfs: Rootfs, ctx: ExecContext) -> None:
    """Make the directory and its missing parents (0755) unless it exists."""
    from runtime.rootfs import mounted_overlay  # here: a build that hits never mounts
    from runtime.users import resolve_user

    target = ctx.scratch / "merged"
    target.mkdir(exist_ok=True)
    with mounted_overlay(rootfs, target, mounts=ctx.mounts) as root:
        host = resolve_in_root(root, spec.path)
        if host.is_dir():
            return
        owner = (0, 0)
        if spec.user:
            try:
                resolved = resolve_user(root, spec.user)
                owner = (resolved.uid, resolved.gid)
            except RuntimeFailure:
                owner = (0, 0)
        missing: list[Path] = []
        probe = host
        while not probe.exists() and probe != root:
            missing.append(probe)
            probe = probe.parent
        for path in reversed(missing):
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)
            os.chown(path, *owner)
