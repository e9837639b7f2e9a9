"""What every op shares: the context a step executes in, and the shape of an op.

An op is a module with two functions over one kind of spec (``builder.plan.specs``):
``key_inputs`` names what the step's result depends on and never touches a sandbox
(it may read the build context, or ask a remote what it holds); ``execute`` makes the
change on a rootfs whose upper dir becomes the step's layer. ``builder.solve`` maps
each spec type to its op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from builder.ops.context import BuildContext
from builder.ops.runsettings import RunSettings
from builder.ops.secrets import BuildSecrets
from builder.ops.sources.remote import RemoteFetches
from cache.keys import KeyInputs

if TYPE_CHECKING:
    from runtime.spec import ContainerSpec, Rootfs, RunResult

SpecT = TypeVar("SpecT", contravariant=True)


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
    """What keying and executing a step may use; built once per build by the solver."""

    context: BuildContext
    sandbox: Sandbox
    scratch: Path  # a private empty dir for mount points
    stage_roots: Mapping[int, tuple[Path, ...]] = field(default_factory=dict)
    stage_keys: Mapping[int, str] = field(default_factory=dict)
    log: Callable[[str], None] = lambda line: None
    store_root: Path | None = None  # where RUN --mount=type=cache dirs live (None: scratch)
    secrets: BuildSecrets = field(default_factory=BuildSecrets)  # --secret/--ssh sources
    run_settings: RunSettings = field(default_factory=RunSettings)  # --add-host, --ulimit...
    # What keying an ADD's remote sources learnt, reused when it runs (one per step).
    fetches: RemoteFetches = field(default_factory=RemoteFetches)
    # False under chroot isolation: this process may not mount, so COPY, ADD and
    # WORKDIR write into a merged copy of the layers (runtime.rootfs.mounted_overlay).
    mounts: bool = True


class Op(Protocol[SpecT]):
    """How to key and how to execute one kind of spec (each op module is one)."""

    def key_inputs(
        self, spec: SpecT, parent: str, instruction: str, ctx: ExecContext
    ) -> KeyInputs: ...

    def execute(self, spec: SpecT, rootfs: Rootfs, ctx: ExecContext) -> None: ...


@contextmanager
def stage_view(ctx: ExecContext, stage: int, name: str = "") -> Iterator[Path]:
    """A merged view of a finished stage's layers; a throwaway upper absorbs any write."""
    from runtime.rootfs import mounted_overlay  # here: a build that hits never mounts
    from runtime.spec import Rootfs

    view = ctx.scratch / (name or f"from-{stage}")
    for name in ("upper", "work", "merged"):
        (view / name).mkdir(parents=True, exist_ok=True)
    # volatile: the upper is thrown away
    rootfs = Rootfs(ctx.stage_roots[stage], view / "upper", view / "work", volatile=True)
    with mounted_overlay(rootfs, view / "merged", mounts=ctx.mounts) as root:
        yield root
