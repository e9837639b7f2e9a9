"""One build, end to end: Dockerfile -> plan -> solve -> image in the store -> outputs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder import instructions as ins
from builder.actions import ExecContext, Sandbox
from builder.context import BuildContext
from builder.dockerfile import parse_dockerfile
from builder.errors import BuildError
from builder.image import commit_image
from builder.outputs import Output, write_output
from builder.plan import Plan, PlanRequest, make_plan
from builder.solve import Events, SolveOptions, Solver, StepResult, count_sandbox_runs
from builder.storage import Storage
from cache.images import StoredImage


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: Path | None = None  # default: <context>/Dockerfile
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    network: str = "host"
    outputs: tuple[Output, ...] = ()
    solve: SolveOptions = field(default_factory=SolveOptions)


@dataclass(frozen=True)
class BuildOutcome:
    image: StoredImage
    plan: Plan
    steps: tuple[StepResult, ...]
    sandbox_runs: int
    duration: float

    @property
    def cached_steps(self) -> int:
        return sum(1 for s in self.steps if s.cached)

    def summary(self) -> str:
        total = len(self.steps)
        rate = 100 * self.cached_steps / total if total else 100.0
        return f"{self.cached_steps}/{total} steps cached ({rate:.0f}%)"


def read_dockerfile(request: BuildRequest) -> ins.Dockerfile:
    path = request.dockerfile or request.context / "Dockerfile"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BuildError(
            f"no Dockerfile at {path}",
            hint="pass the build context directory, or name the file with -f",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read {path}: {exc}") from None
    return parse_dockerfile(text, str(path))


def run_build(
    request: BuildRequest,
    storage: Storage,
    events: Events,
    sandbox: Sandbox,
    warn: Events | None = None,
) -> BuildOutcome:
    """Build the request against ``storage``; every step is reported through ``events``."""
    started = time.time()
    dockerfile = read_dockerfile(request)
    context = BuildContext(request.context, dockerfile=request.dockerfile)
    plan = make_plan(
        PlanRequest(dockerfile, dict(request.build_args), request.target, request.network),
        lambda name, _instr: _resolve_base(storage, name, _instr),
    )
    for warning in plan.warnings:
        _warn(events, warning)
    scratch = storage.blobs.tmp_dir
    solver = Solver(storage, ExecContext(context, sandbox, scratch), events, request.solve)
    result = solver.solve(plan)
    image = commit_image(storage, result, request.tags)
    for output in request.outputs:
        write_output(storage, output, image.digest, request.tags)
    return BuildOutcome(
        image,
        plan,
        tuple(solver.steps),
        count_sandbox_runs(solver.steps, plan),
        time.time() - started,
    )


def _warn(events: Events, message: str) -> None:
    warn = getattr(events, "warning", None)
    if callable(warn):
        warn(message)


def _resolve_base(storage: Storage, name: str, instr: ins.From) -> StoredImage:
    try:
        return storage.get_image(name)
    except BuildError as exc:
        raise exc.located(instr.location.file, instr.location.line) from None


def parse_build_args(values: Mapping[str, str] | list[str]) -> tuple[tuple[str, str], ...]:
    """``K=V`` strings to pairs; ``K`` alone takes the value from our environment (docker)."""
    import os

    pairs: list[tuple[str, str]] = []
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise BuildError(f"--build-arg {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        pairs.append((key, value))
    return tuple(pairs)
