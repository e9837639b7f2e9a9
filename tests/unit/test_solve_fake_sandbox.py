"""Planning and solving without root: a fake sandbox behind the same protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.frontend.dockerfile import parse_dockerfile
from builder.images.store import Storage
from builder.ops.base import ExecContext
from builder.ops.context import BuildContext
from builder.plan.planner import Plan, PlannedStep, PlanRequest, StagePlan, make_plan
from builder.solve import SolveOptions, Solver, StepResult
from runtime.spec import ContainerSpec, RunResult


@dataclass
class FakeSandbox:
    """Writes ``args[-1]`` as a file named by the step into the upper dir; records calls."""

    calls: list[ContainerSpec] = field(default_factory=list)
    exit_code: int = 0

    def run(
        self,
        spec: ContainerSpec,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> RunResult:
        self.calls.append(spec)
        script = spec.args[-1]
        (spec.rootfs.upper / f"ran-{len(self.calls)}").write_text(script)
        return RunResult(self.exit_code)


class Quiet:
    def step_started(self, stage: StagePlan, step: PlannedStep) -> None:
        pass

    def step_log(self, step: PlannedStep, line: str) -> None:
        pass

    def step_finished(self, stage: StagePlan, step: PlannedStep, result: StepResult) -> None:
        pass


def plan_of(text: str, build_args: dict[str, str] | None = None) -> Plan:
    df = parse_dockerfile(text, "Dockerfile")

    def no_images(name: str, _instr: object) -> object:
        raise BuildError(f"no image {name}")

    return make_plan(PlanRequest(df, build_args or {}, None, "none"), no_images)  # type: ignore[arg-type]


def solve(
    tmp_path: Path, text: str, sandbox: FakeSandbox, **options: object
) -> tuple[Solver, Storage]:
    storage = Storage.open(tmp_path / "store")
    ctx_dir = tmp_path / "ctx"
    ctx_dir.mkdir(exist_ok=True)
    ctx = ExecContext(BuildContext(ctx_dir), sandbox, storage.blobs.tmp_dir)
    build_args = options.pop("build_args", None)
    solver = Solver(storage, ctx, Quiet(), SolveOptions(**options))  # type: ignore[arg-type]
    solver.solve(plan_of(text, build_args))  # type: ignore[arg-type]
    return solver, storage


DOCKERFILE = "FROM scratch\nARG V=1\nRUN first $V\nENV X=y\nRUN second\n"


def test_rebuild_with_same_inputs_runs_no_sandbox(tmp_path: Path) -> None:
    first = FakeSandbox()
    solver, storage = solve(tmp_path, DOCKERFILE, first)
    storage.close()
    assert len(first.calls) == 2
    assert [s.cached for s in solver.steps] == [False, False]
    second = FakeSandbox()
    solver, storage = solve(tmp_path, DOCKERFILE, second)
    storage.close()
    assert second.calls == []
    assert [s.cached for s in solver.steps] == [True, True]


def test_changed_arg_misses_and_says_which(tmp_path: Path) -> None:
    solve(tmp_path, DOCKERFILE, FakeSandbox())[1].close()
    sandbox = FakeSandbox()
    solver, storage = solve(tmp_path, DOCKERFILE, sandbox, build_args={"V": "2"})
    storage.close()
    assert [s.cached for s in solver.steps] == [False, False]
    assert "V" in solver.steps[0].reason
    assert "parent" in solver.steps[1].reason


def test_no_cache_reexecutes_and_reports_flag(tmp_path: Path) -> None:
    solve(tmp_path, DOCKERFILE, FakeSandbox())[1].close()
    sandbox = FakeSandbox()
    solver, storage = solve(tmp_path, DOCKERFILE, sandbox, no_cache=True)
    storage.close()
    assert len(sandbox.calls) == 2
    assert all(s.reason == "--no-cache" for s in solver.steps)


def test_run_sees_args_env_and_workdir_defaults(tmp_path: Path) -> None:
    sandbox = FakeSandbox()
    solve(tmp_path, DOCKERFILE, sandbox)[1].close()
    first, second = sandbox.calls
    assert first.args == ("/bin/sh", "-c", "first $V")
    assert "V=1" in first.env and first.network == "none" and first.cwd == "/"
    assert "X=y" in second.env
    assert any(e.startswith("PATH=") for e in second.env)


def test_each_executed_step_adds_one_layer_on_top(tmp_path: Path) -> None:
    sandbox = FakeSandbox()
    solver, storage = solve(tmp_path, DOCKERFILE, sandbox)
    storage.close()
    layers = [s.layer for s in solver.steps]
    assert all(layer is not None for layer in layers)
    assert len({layer.digest for layer in layers if layer}) == 2
    # the second RUN saw the first one's layer as its only lower
    assert len(sandbox.calls[1].rootfs.lowers) == 1


def test_failing_run_is_a_build_error_with_location(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as err:
        solve(tmp_path, "FROM scratch\nRUN broken\n", FakeSandbox(exit_code=5))
    assert err.value.line == 2
    assert "exit code 5" in err.value.message


def test_a_solver_checks_a_shared_base_layer_once_not_per_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from builder.images.load import load_archive
    from tests.archive_samples import REF, Layout, layer

    storage = Storage.open(tmp_path / "store")
    layout = Layout()
    layout.tag(layout.image([layer({"etc/hello": b"hi\n"})]), {REF: "base:1"})
    archive = tmp_path / "base.tar"
    archive.write_bytes(layout.tar())
    load_archive(archive, storage.blobs, storage.index)
    ensured: list[str] = []
    real_ensure = storage.layers.ensure

    def counting_ensure(desc: object, diff_id: object) -> Path:
        ensured.append(str(diff_id))
        return real_ensure(desc, diff_id)  # type: ignore[arg-type]

    monkeypatch.setattr(storage.layers, "ensure", counting_ensure)
    df = parse_dockerfile("FROM base:1 AS a\nRUN a\nFROM base:1 AS b\nRUN b\n", "Dockerfile")
    ctx_dir = tmp_path / "ctx"
    ctx_dir.mkdir()
    sandbox = FakeSandbox()
    ctx = ExecContext(BuildContext(ctx_dir), sandbox, storage.blobs.tmp_dir)
    solver = Solver(storage, ctx, Quiet(), SolveOptions())
    for target in ("a", "b"):  # two stages started from the same base
        request = PlanRequest(df, {}, target, "none")
        solver.solve(make_plan(request, lambda name, _instr: storage.get_image(name)))
    storage.close()
    assert len(sandbox.calls) == 2
    assert len(ensured) == 1  # one base layer, checked once
    assert sandbox.calls[0].rootfs.lowers == sandbox.calls[1].rootfs.lowers != ()


def test_a_failing_run_is_reported_before_a_later_copy_that_cannot_be_keyed(
    tmp_path: Path,
) -> None:
    with pytest.raises(BuildError) as err:
        solve(tmp_path, "FROM scratch\nRUN broken\nCOPY missing /x\n", FakeSandbox(exit_code=5))
    assert err.value.line == 2
    assert "exit code 5" in err.value.message


def test_a_copy_that_cannot_be_keyed_fails_at_its_own_line_after_the_steps_above(
    tmp_path: Path,
) -> None:
    sandbox = FakeSandbox()
    with pytest.raises(BuildError) as err:
        solve(tmp_path, "FROM scratch\nRUN ok\nCOPY missing /x\n", sandbox)
    assert err.value.line == 3
    assert "missing" in err.value.message
    assert len(sandbox.calls) == 1
