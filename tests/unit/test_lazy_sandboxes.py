"""The build's sandboxes are made at its first RUN that executes, and a cancel that
came before still stops it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import runtime.sandboxes
from builder.lazysandbox import LazySandboxes
from runtime.errors import SandboxCancelled
from runtime.spec import ContainerSpec, RunResult

REPO = Path(__file__).resolve().parents[2]


class Recorder:
    made: list[Recorder] = []

    def __init__(self, **_options: object) -> None:  # network_dir=...
        self.calls: list[str] = []
        Recorder.made.append(self)

    def run(self, spec: ContainerSpec, **_streams: int | None) -> RunResult:
        self.calls.append("run")
        return RunResult(0)

    def cancel(self) -> None:
        self.calls.append("cancel")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    Recorder.made = []
    monkeypatch.setattr(runtime.sandboxes, "Sandboxes", Recorder)
    return Recorder


def _spec() -> ContainerSpec:
    return ContainerSpec.__new__(ContainerSpec)  # never looked at by the recorder


def test_a_build_that_runs_nothing_never_loads_the_sandboxes() -> None:
    script = (
        "import sys\n"
        "from builder.lazysandbox import LazySandboxes\n"
        "LazySandboxes().cancel()\n"
        "print('runtime.sandboxes' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_the_sandboxes_are_made_once_at_the_first_run(recorder: type[Recorder]) -> None:
    boxes = LazySandboxes()
    assert recorder.made == []
    boxes.run(_spec())
    boxes.run(_spec())
    assert [r.calls for r in recorder.made] == [["run", "run"]]


def test_a_cancel_after_the_first_run_reaches_the_sandboxes(recorder: type[Recorder]) -> None:
    boxes = LazySandboxes()
    boxes.run(_spec())
    boxes.cancel()
    assert recorder.made[0].calls == ["run", "cancel"]


def test_a_cancel_before_the_first_run_is_passed_on_when_they_are_made(
    recorder: type[Recorder],
) -> None:
    boxes = LazySandboxes()
    boxes.cancel()
    boxes.run(_spec())
    assert recorder.made[0].calls == ["cancel", "run"]


def test_a_cancelled_build_starts_no_container(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_start(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a sandbox was started")

    monkeypatch.setattr(runtime.sandboxes, "start", no_start)
    boxes = LazySandboxes()
    boxes.cancel()
    with pytest.raises(SandboxCancelled):
        boxes.run(_spec())


def test_leaving_the_block_closes_what_was_made(recorder: type[Recorder]) -> None:
    with LazySandboxes() as boxes:
        boxes.run(_spec())
    assert [r.calls for r in recorder.made] == [["run", "close"]]


def test_closing_before_any_run_makes_nothing(recorder: type[Recorder]) -> None:
    LazySandboxes().close()
    assert recorder.made == []


def test_chroot_isolation_makes_the_chroot_runner_and_never_the_namespace_sandbox(
    recorder: type[Recorder],
) -> None:
    from runtime.chroot import ChrootSandboxes

    lazy = LazySandboxes("chroot")
    lazy.cancel()
    with pytest.raises(SandboxCancelled):
        lazy.run(_spec())
    assert isinstance(lazy._made, ChrootSandboxes)
    assert recorder.made == []
