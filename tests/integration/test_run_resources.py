"""--memory, --pids-limit and --cpus through the CLI: for `pybuild run` and build-wide
for every RUN step. A memory hog and a fork bomb are stopped and said to be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

HOG = "x=a; while true; do x=$x$x; done"
BOMB = "bomb() { bomb & bomb; }; bomb"


def _pids_on_host() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def test_run_memory_hog_is_killed_and_reported(pybuild: Pybuild) -> None:
    result = pybuild("run", "--memory", "32m", "busybox", "sh", "-c", HOG, ok=False)
    assert result.code == 137
    assert "memory limit 32.0 MiB" in result.err and "Traceback" not in result.err


def test_run_fork_bomb_is_held_at_the_pids_limit(pybuild: Pybuild) -> None:
    before = _pids_on_host()
    result = pybuild("run", "--pids-limit", "40", "busybox", "sh", "-c", BOMB, ok=False)
    assert result.code != 0
    assert "pids limit (40) was reached" in result.err
    assert _pids_on_host() < before + 20  # nothing of the bomb outlives the container


def test_run_cpus_limit_is_accepted_and_the_command_runs(pybuild: Pybuild) -> None:
    assert pybuild("run", "--cpus", "0.5", "busybox", "echo", "ok").out == "ok\n"


def test_run_bad_memory_value_is_a_usage_error_125(pybuild: Pybuild) -> None:
    result = pybuild("run", "--memory", "lots", "busybox", "true", ok=False)
    assert result.code == 125
    assert "--memory 'lots'" in result.err and "Traceback" not in result.err


def test_build_memory_limit_stops_a_hog_in_a_run_step(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\nRUN {HOG}\n")
    result = pybuild.build(ctx, "--memory", "32m", ok=False)
    assert result.code != 0
    err = " ".join(result.err.split())  # the message may be wrapped
    assert "out of memory" in err and "memory limit 32.0 MiB" in err


def test_build_pids_limit_stops_a_fork_bomb_in_a_run_step(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\nRUN {BOMB}\n")
    result = pybuild.build(ctx, "--pids-limit", "40", ok=False)
    assert result.code != 0
    assert "pids limit (40) was reached" in " ".join(result.err.split())  # may be wrapped
    assert "Traceback" not in result.err


def test_build_limits_do_not_change_the_cache_key(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN echo hi > /f\n")
    pybuild.build(ctx, "-t", "a:1")
    again = pybuild.build(ctx, "-t", "a:2", "--memory", "64m", "--pids-limit", "100")
    assert "1/1 steps cached" in again.err + again.out
