"""The filesystem-changing step kinds: how to key each one, and how to run it.

STYLE habit 4: ``key_inputs`` never touches a sandbox or the network (it may read the
build context to fingerprint sources); ``execute`` makes the change on a rootfs whose
upper dir becomes the step's layer.
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from builder.errors import BuildError
from builder.ops.context import BuildContext
from builder.ops.copy import CopyAction
from builder.ops.mounts import RunMount, mounted
from builder.ops.rootpath import resolve_in_root
from builder.ops.runsettings import RunSettings
from builder.ops.secrets import BuildSecrets
from builder.plan.state import DEFAULT_HOSTNAME
from cache.keys import KeyInputs, Pairs
from runtime.errors import RuntimeFailure
from runtime.rootfs import mounted_overlay
from runtime.spec import BindMount, ContainerSpec, Rootfs, RunResult
from runtime.users import resolve_user

_TAIL_LINES = 20


class Sandbox(Protocol):
    """What the solver needs of runtime.sandbox (a fake implements it in tests)."""

    def run(
        self,
        spec: ContainerSpec,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> RunResult: ...


@dataclass
class ExecContext:
    """What executing a step may use; built once per build by the solver."""

    context: BuildContext
    sandbox: Sandbox
    scratch: Path  # a private empty dir for mount points
    stage_roots: Mapping[int, tuple[Path, ...]] = field(default_factory=dict)
    stage_keys: Mapping[int, str] = field(default_factory=dict)
    log: Callable[[str], None] = lambda line: None
    store_root: Path | None = None  # where RUN --mount=type=cache dirs live (None: scratch)
    secrets: BuildSecrets = field(default_factory=BuildSecrets)  # --secret/--ssh sources
    run_settings: RunSettings = field(default_factory=RunSettings)  # --add-host, --ulimit...


@dataclass(frozen=True)
class RunAction:
    """RUN: a command in the sandbox over the parent's layers."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    key_env: tuple[tuple[str, str], ...]  # what the key sees (proxy ARGs left out)
    user: str
    cwd: str
    network: str
    text: str  # the command as the user wrote it, for messages
    scripts: tuple[tuple[str, str], ...] = ()  # heredoc scripts: (container path, content)
    run_mounts: tuple[RunMount, ...] = ()  # RUN --mount
    privileged: bool = False  # RUN --security=insecure (with --allow security.insecure)
    hostname: str = DEFAULT_HOSTNAME  # --build-arg BUILDKIT_SANDBOX_HOSTNAME sets it

    def key_inputs(self, parent: str, instruction: str, ctx: ExecContext) -> KeyInputs:
        extra: tuple[tuple[str, str], ...] = (
            ("cwd", self.cwd),
            ("network", self.network),
            ("user", self.user),
        )
        if self.hostname != DEFAULT_HOSTNAME:  # in BuildKit's exec meta; old keys unchanged
            extra += (("hostname", self.hostname),)
        extra += tuple(("mount", m.describe()) for m in self.run_mounts)
        extra += ctx.run_settings.key_extra()
        sources: list[tuple[str, str]] = []
        files: list[tuple[str, str]] = []
        for mount in self.run_mounts:
            if mount.kind == "bind":
                source, shown = _mount_source(mount, ctx)
                sources.append(source)
                files += shown
        return KeyInputs(
            parent=parent,
            instruction=instruction,
            env=self.key_env,
            extra=extra,
            sources=tuple(sources),
            files=tuple(files),
        )

    def execute(self, rootfs: Rootfs, ctx: ExecContext) -> None:
        with mounted(self.run_mounts, ctx) as extra:
            overridden = {e.partition("=")[0] for e in extra.env}
            spec = ContainerSpec(
                rootfs=rootfs,
                args=self.args,
                env=(*(e for e in self.env if e.partition("=")[0] not in overridden), *extra.env),
                cwd=self.cwd,
                user=self.user,
                network=self.network,
                hostname=self.hostname,
                mounts=(*self._script_mounts(ctx.scratch), *extra.binds),
                tmpfs=extra.tmpfs,
                privileged=self.privileged,
                scratch=ctx.scratch,  # in the step's locked store temp dir: swept if killed
                hosts=ctx.run_settings.hosts_file("pybuild"),
                shm_size=ctx.run_settings.shm_size,
                rlimits=ctx.run_settings.ulimits,
            )
            result, tail = _run_logged(ctx, spec)
        if result.exit_code != 0:
            output = "\n".join(tail)
            what = result.error or f"exit code {result.exit_code}"
            raise BuildError(
                f"RUN {self.text} failed: {what}"
                + (f"\n--- last output ---\n{output}" if output else ""),
                hint="fix the command, or run the image up to the previous step with "
                "`pybuild build --target` and `pybuild run` to debug it",
            )

    def _script_mounts(self, scratch: Path) -> tuple[BindMount, ...]:
        """Heredoc scripts with a shebang run as files, bind-mounted read-only (BuildKit
        mounts them under /dev/pipes, so they never land in the layer)."""
        mounts = []
        for i, (target, content) in enumerate(self.scripts):
            host = scratch / f"script-{i}"
            host.write_text(content)
            host.chmod(0o755)
            mounts.append(BindMount(host, target, readonly=True))
        return tuple(mounts)


def _mount_source(mount: RunMount, ctx: ExecContext) -> tuple[tuple[str, str], Pairs]:
    """What a bind mount adds to the key: the content it shows (``source``'s, from the
    stage or the context, never a whole stage's key), and per-file records named where
    the RUN sees them, so a miss names the file that changed."""
    from builder.ops.filekeys import file_records
    from builder.ops.stagekeys import mount_content

    name = f"mount:{mount.target}"
    if mount.from_stage is not None:
        lowers = ctx.stage_roots[mount.from_stage]
        content = mount_content(lowers, mount.source or "/", mount.target, ctx.context.hash_file)
        return (name, content.fingerprint), content.files
    rels = ctx.context.resolve_sources(mount.source)
    fingerprint = ctx.context.fingerprint(rels)
    records = file_records(ctx.context, rels)
    return (name, fingerprint), tuple((_seen_at(mount.target, rels, r), v) for r, v in records)


def _seen_at(target: str, tops: Sequence[str], rel: str) -> str:
    """Where context path ``rel``, mounted from one of ``tops``, shows in the RUN."""
    for top in tops:
        if not top:
            return posixpath.join(target, rel)
        if rel == top or rel.startswith(top + "/"):
            return posixpath.join(target, rel[len(top) :].lstrip("/")).rstrip("/")
    return posixpath.join(target, rel)


def _run_logged(ctx: ExecContext, spec: ContainerSpec) -> tuple[RunResult, list[str]]:
    """Run spec with stdout+stderr to a pipe; every line to ctx.log; keep the tail."""
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    read_fd, write_fd = os.pipe()

    def pump() -> None:
        with open(read_fd, "rb", closefd=True) as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                tail.append(line)
                ctx.log(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        result = ctx.sandbox.run(spec, stdin=devnull, stdout=write_fd, stderr=write_fd)
    except RuntimeFailure as exc:
        raise BuildError(f"sandbox failed: {exc.message}", hint=exc.hint) from None
    finally:
        os.close(write_fd)
        os.close(devnull)
        reader.join()
    return result, list(tail)


@dataclass(frozen=True)
class WorkdirAction:
    """WORKDIR: create the directory (owned by the current USER, as BuildKit does)."""

    path: str
    user: str

    def key_inputs(self, parent: str, instruction: str, ctx: ExecContext) -> KeyInputs:
        return KeyInputs(
            parent=parent, instruction=instruction, env=(), extra=(("user", self.user),)
        )

    def execute(self, rootfs: Rootfs, ctx: ExecContext) -> None:
        target = ctx.scratch / "merged"
        target.mkdir(exist_ok=True)
        with mounted_overlay(rootfs, target) as root:
            host = resolve_in_root(root, self.path)
            if host.is_dir():
                return
            owner = (0, 0)
            if self.user:
                try:
                    resolved = resolve_user(root, self.user)
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


Action = RunAction | CopyAction | WorkdirAction
__all__ = ["Action", "CopyAction", "ExecContext", "RunAction", "Sandbox", "WorkdirAction"]
