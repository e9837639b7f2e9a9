"""A build being cancelled starts no further step (fake sandbox, no root)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from builder.errors import BuildCancelled
from builder.images.store import Storage
from builder.ops.base import ExecContext
from builder.ops.context import BuildContext
from builder.solve import SolveOptions, Solver
from runtime.spec import ContainerSpec, RunResult
from tests.unit.test_solve_fake_sandbox import Quiet, plan_of

DOCKERFILE = "FROM scratch\nRUN first\nRUN second\nRUN third\n"


@dataclass
class StoppingSandbox:
    """Runs a step, and during the ``stop_at``-th one the build is cancelled."""

    stop: threading.Event
    stop_at: int
    calls: list[str] = field(default_factory=list)

    def run(
        self,
        spec: ContainerSpec,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> RunResult:
        self.calls.append(spec.args[-1])
        if len(self.calls) == self.stop_at:
            self.stop.set()
        return RunResult(0)


def _solver(tmp_path: Path, sandbox: StoppingSandbox) -> tuple[Solver, Storage]:
    storage = Storage.open(tmp_path / "store")
    ctx_dir = tmp_path / "ctx"
    ctx_dir.mkdir()
    ctx = ExecContext(BuildContext(ctx_dir), sandbox, storage.blobs.tmp_dir)
    return Solver(storage, ctx, Quiet(), SolveOptions(), stop=sandbox.stop), storage


def test_no_step_starts_after_stop_is_set(tmp_path: Path) -> None:
    sandbox = StoppingSandbox(threading.Event(), stop_at=1)
    solver, storage = _solver(tmp_path, sandbox)
    with pytest.raises(BuildCancelled, match="cancelled"):
        solver.solve(plan_of(DOCKERFILE))
    assert sandbox.calls == ["first"]
    assert list(storage.blobs.tmp_dir.iterdir()) == []  # the step's temp dir is gone
    storage.close()


def test_a_stopped_build_runs_nothing(tmp_path: Path) -> None:
    sandbox = StoppingSandbox(threading.Event(), stop_at=0)
    sandbox.stop.set()
    solver, storage = _solver(tmp_path, sandbox)
    with pytest.raises(BuildCancelled):
        solver.solve(plan_of(DOCKERFILE))
    assert sandbox.calls == []
    storage.close()
