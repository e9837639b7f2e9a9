"""RUN as an op: its key (the command, its environment and mounts, what bind mounts
show) and its execution in the sandbox over the parent's layers (``builder.ops.base``).
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from builder.errors import BuildError
from builder.ops.base import ExecContext
from builder.ops.filekeys import file_records
from builder.ops.stagekeys import mount_content
from builder.plan.specs import DEFAULT_HOSTNAME, MountSpec, RunSpec
from cache.keys import KeyInputs, Pairs
from runtime.errors import RuntimeFailure
from runtime.spec import BindMount, ContainerSpec, Rootfs, RunResult

_TAIL_LINES = 20


def key_inputs(spec: RunSpec, parent: str, instruction: str, ctx: ExecContext) -> KeyInputs:
    """The RUN's key inputs: where and as whom it runs, its mounts' definitions and
    what its bind mounts show, the build's run settings; never runs anything."""
    extra: tuple[tuple[str, str], ...] = (
        ("cwd", spec.cwd),
        ("network", spec.network),
        ("user", spec.user),
    )
    if spec.hostname != DEFAULT_HOSTNAME:  # in BuildKit's exec meta; old keys unchanged
        extra += (("hostname", spec.hostname),)
    extra += tuple(("mount", m.describe()) for m in spec.mounts)
    extra += ctx.run_settings.key_extra()
    sources: list[tuple[str, str]] = []
    files: list[tuple[str, str]] = []
    for mount in spec.mounts:
        if mount.kind == "bind":
            source, shown = _mount_source(mount, ctx)
            sources.append(source)
            files += shown
    return KeyInputs(
        parent=parent,
        instruction=instruction,
        env=spec.key_env,
        extra=extra,
        sources=tuple(sources),
        files=tuple(files),
    )


def execute(spec: RunSpec, rootfs: Rootfs, ctx: ExecContext) -> None:
    """Run the command in the sandbox on ``rootfs``; BuildError with the output's tail
    when it fails."""
    from builder.ops.mounts import mounted  # here: secrets, cache dirs, stage views

    with mounted(spec.mounts, ctx) as extra:
        overridden = {e.partition("=")[0] for e in extra.env}
        container = ContainerSpec(
            rootfs=rootfs,
            args=spec.args,
            env=(*(e for e in spec.env if e.partition("=")[0] not in overridden), *extra.env),
            cwd=spec.cwd,
            user=spec.user,
            # "default" is runtime.sandboxes.POOLED: a private network from the build's pool
            network=spec.network,
            hostname=spec.hostname,
            mounts=(*_script_mounts(spec, ctx.scratch), *extra.binds),
            tmpfs=extra.tmpfs,
            privileged=spec.privileged,
            scratch=ctx.scratch,  # in the step's locked store temp dir: swept if killed
            hosts=ctx.run_settings.hosts_file("pybuild"),
            shm_size=ctx.run_settings.shm_size,
            rlimits=ctx.run_settings.ulimits,
        )
        result, tail = _run_logged(ctx, container)
    if result.exit_code != 0:
        output = "\n".join(tail)
        what = result.error or f"exit code {result.exit_code}"
        raise BuildError(
            f"RUN {spec.text} failed: {what}"
            + (f"\n--- last output ---\n{output}" if output else ""),
            hint="fix the command, or run the image up to the previous step with "
            "`pybuild build --target` and `pybuild run` to debug it",
        )


def _script_mounts(spec: RunSpec, scratch: Path) -> tuple[BindMount, ...]:
    """Heredoc scripts with a shebang run as files, bind-mounted read-only (BuildKit
    mounts them under /dev/pipes, so they never land in the layer)."""
    mounts = []
    for i, (target, content) in enumerate(spec.scripts):
        host = scratch / f"script-{i}"
        host.write_text(content)
        host.chmod(0o755)
        mounts.append(BindMount(host, target, readonly=True))
    return tuple(mounts)


def _mount_source(mount: MountSpec, ctx: ExecContext) -> tuple[tuple[str, str], Pairs]:
    """What a bind mount adds to the key: the content it shows (``source``'s, from the
    stage or the context, never a whole stage's key), and per-file records named where
    the RUN sees them, so a miss names the file that changed."""
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
