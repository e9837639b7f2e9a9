"""The filesystem-changing step kinds: how to key each one, and how to run it.

STYLE habit 4: ``key_inputs`` never touches a sandbox or the network (it may read the
build context to fingerprint sources); ``execute`` makes the change on a rootfs whose
upper dir becomes the step's layer.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from builder.context import BuildContext
from builder.copy import CopyOptions, SourceItem, copy_sources, walk_tree
from builder.errors import BuildError
from builder.rootpath import clean, resolve_in_root
from cache.keys import KeyInputs
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

    def key_inputs(self, parent: str, instruction: str, ctx: ExecContext) -> KeyInputs:
        extra = (("cwd", self.cwd), ("network", self.network), ("user", self.user))
        return KeyInputs(parent=parent, instruction=instruction, env=self.key_env, extra=extra)

    def execute(self, rootfs: Rootfs, ctx: ExecContext) -> None:
        spec = ContainerSpec(
            rootfs=rootfs,
            args=self.args,
            env=self.env,
            cwd=self.cwd,
            user=self.user,
            network=self.network,
            hostname="pybuild",
            mounts=self._script_mounts(ctx.scratch),
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
class CopyAction:
    """COPY/ADD of local sources: from the context, a stage (``from_stage``)."""

    sources: tuple[str, ...]
    dest: str  # absolute container path; a trailing "/" kept
    from_stage: int | None
    chown: str | None
    chmod: int | None
    excludes: tuple[str, ...] = ()

    def key_inputs(self, parent: str, instruction: str, ctx: ExecContext) -> KeyInputs:
        if self.from_stage is not None:
            sources = ((f"stage:{self.from_stage}", ctx.stage_keys[self.from_stage]),)
        else:
            rels = self._context_rels(ctx)
            sources = (("context", ctx.context.fingerprint(rels, excludes=self.excludes)),)
        return KeyInputs(parent=parent, instruction=instruction, env=(), sources=sources)

    def _context_rels(self, ctx: ExecContext) -> list[str]:
        rels: list[str] = []
        for source in self.sources:
            rels.extend(ctx.context.resolve_sources(source, excludes=self.excludes))
        return rels

    def execute(self, rootfs: Rootfs, ctx: ExecContext) -> None:
        target = ctx.scratch / "merged"
        target.mkdir(exist_ok=True)
        with mounted_overlay(rootfs, target) as root:
            opts = CopyOptions(
                owner=self._owner(root), chmod=self.chmod, chown_parents=bool(self.chown)
            )
            if self.from_stage is None:
                items = [self._context_item(ctx, rel) for rel in self._context_rels(ctx)]
                copy_sources(root, items, self.dest, force_dir=self._force_dir(items), opts=opts)
            else:
                with _stage_view(ctx, self.from_stage) as stage_root:
                    items = self._stage_items(stage_root)
                    copy_sources(
                        root, items, self.dest, force_dir=self._force_dir(items), opts=opts
                    )

    def _force_dir(self, items: Sequence[SourceItem]) -> bool:
        many = len(items) > 1 or any(_has_wildcard(s) for s in self.sources)
        if many and not self.dest.endswith("/"):
            raise BuildError(
                f"when copying more than one source file, the destination must be a "
                f"directory and end with a /: {self.dest}",
                hint=f"write the destination as {self.dest}/",
            )
        return many

    def _owner(self, root: Path) -> tuple[int, int]:
        if not self.chown:
            return (0, 0)
        try:
            user = resolve_user(root, self.chown)
        except RuntimeFailure as exc:
            raise BuildError(f"--chown={self.chown}: {exc.message}", hint=exc.hint) from None
        return (user.uid, user.gid)

    def _context_item(self, ctx: ExecContext, rel: str) -> SourceItem:
        walked = ctx.context.walk(rel, excludes=self.excludes)
        entries = [(_relative(e.rel, rel), e.path) for e in walked]
        top = entries[0][1] if rel else ctx.context.root
        if not rel:
            entries.insert(0, ("", top))
        return SourceItem(name=posixpath.basename(rel) or ".", path=top, entries=tuple(entries))

    def _stage_items(self, stage_root: Path) -> list[SourceItem]:
        items: list[SourceItem] = []
        for source in self.sources:
            for path in _glob_in_root(stage_root, source):
                entries = tuple(walk_tree(path))
                items.append(SourceItem(name=path.name, path=path, entries=entries))
        return items


def _relative(rel: str, top: str) -> str:
    top = "" if top in ("", ".") else top.rstrip("/")
    if not top:
        return rel
    if rel == top:
        return ""
    return rel[len(top) + 1 :]


def _has_wildcard(source: str) -> bool:
    return any(c in source for c in "*?[")


def _glob_in_root(root: Path, source: str) -> list[Path]:
    """Sources in another stage's rootfs: symlinks resolved inside it, wildcards allowed."""

    path = clean(source)
    if not _has_wildcard(path):
        host = resolve_in_root(root, path)
        if not host.exists():
            raise BuildError(f"COPY --from source not found: {source}: no such file or directory")
        return [host]
    parent = resolve_in_root(root, posixpath.dirname(path))
    pattern = posixpath.basename(path)
    found = (
        sorted(p for p in parent.iterdir() if fnmatch.fnmatchcase(p.name, pattern))
        if parent.is_dir()
        else []
    )
    if not found:
        raise BuildError(f"COPY --from source not found: no file matches {source}")
    return found


@contextmanager
def _stage_view(ctx: ExecContext, stage: int) -> Iterator[Path]:
    """A merged view of a finished stage's layers; a throwaway upper absorbs nothing."""
    view = ctx.scratch / f"from-{stage}"
    for name in ("upper", "work", "merged"):
        (view / name).mkdir(parents=True, exist_ok=True)
    rootfs = Rootfs(ctx.stage_roots[stage], view / "upper", view / "work")
    with mounted_overlay(rootfs, view / "merged") as root:
        yield root


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
