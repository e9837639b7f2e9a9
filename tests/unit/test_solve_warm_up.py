"""The sandboxes start at the first step that misses, when a RUN may execute after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.images.store import Storage
from builder.ops.base import ExecContext
from builder.ops.context import BuildContext
from builder.solve import SolveOptions, Solver
from tests.unit.test_solve_fake_sandbox import FakeSandbox, Quiet, plan_of


def _warm_ups(tmp_path: Path, text: str) -> int:
    """How often the solver asked for the sandboxes to start early, building ``text``."""
    calls: list[None] = []
    ctx_dir = tmp_path / "ctx"
    ctx_dir.mkdir(exist_ok=True)
    with Storage.open(tmp_path / "store") as storage:
        # mounts=False: WORKDIR writes its upper dir directly (no overlay, no root)
        ctx = ExecContext(BuildContext(ctx_dir), FakeSandbox(), storage.blobs.tmp_dir, mounts=False)
        solver = Solver(storage, ctx, Quiet(), SolveOptions(), warm_up=lambda: calls.append(None))
        solver.solve(plan_of(text))
    return len(calls)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM scratch\nWORKDIR /a\nRUN one\nRUN two\n", 1),  # once, at the WORKDIR
        ("FROM scratch\nRUN one\nWORKDIR /a\n", 0),  # the RUN starts them itself
        ("FROM scratch\nRUN one\nRUN two\n", 0),  # so does each RUN after it
        ("FROM scratch\nWORKDIR /a\nWORKDIR /b\n", 0),  # no RUN: nothing to start
        ("FROM scratch AS a\nWORKDIR /a\nFROM scratch\nCOPY --from=a /a /a\nRUN x\n", 1),
    ],
)
def test_sandboxes_start_early_only_when_a_run_may_follow_a_miss(
    tmp_path: Path, text: str, expected: int
) -> None:
    assert _warm_ups(tmp_path, text) == expected


def test_a_build_that_hits_every_step_starts_no_sandbox(tmp_path: Path) -> None:
    text = "FROM scratch\nWORKDIR /a\nRUN one\n"
    assert _warm_ups(tmp_path, text) == 1
    assert _warm_ups(tmp_path, text) == 0
