"""SIGINT (Ctrl-C) and SIGTERM stop a build within seconds: the running RUN's container is
killed, no further step starts, the store stays valid and the next build works. BuildKit
cancels a solve the same way (about 4 s); the exit codes are the shell's 128+N."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, processes_with, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

DOCKERFILE = "FROM busybox\nARG S\nRUN echo step-started && sleep $S\nRUN echo after > /after\n"


def _start(pybuild: Pybuild, ctx: Path, seconds: int, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "builder.cli", "build", "--progress", "plain", *args]
    return subprocess.Popen(
        [*command, "--build-arg", f"S={seconds}", str(ctx)],
        cwd=REPO,
        env={**os.environ, "PYBUILD_ROOT": str(pybuild.root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job
    )


def _wait_for_step(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.rstrip().endswith(" step-started"):
            return seen
    raise AssertionError(f"the RUN step never started:\n{''.join(seen)}")


def _wait_for_process(marker: str, timeout: float = 10.0) -> list[int]:
    """The pids running ``marker``, waited for: the step's echo is printed before its
    shell has started the next command."""
    deadline = time.monotonic() + timeout
    while not (found := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _assert_store_clean(pybuild: Pybuild) -> None:
    report = json.loads(pybuild("cache", "verify", "--json").out)
    assert report["clean"], report["findings"]
    assert sorted(p.name for p in (pybuild.root / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("signum", "code", "to_group", "isolation"),
    [
        (signal.SIGINT, 130, False, "auto"),
        (signal.SIGTERM, 143, False, "auto"),
        (signal.SIGINT, 130, True, "auto"),  # Ctrl-C: the terminal signals the whole group
        (signal.SIGINT, 130, False, "chroot"),
        (signal.SIGINT, 130, True, "chroot"),
    ],
    ids=["sigint", "sigterm", "ctrl-c-to-group", "sigint-chroot", "ctrl-c-to-group-chroot"],
)
def test_signal_stops_a_running_step_and_the_next_build_works(
    pybuild: Pybuild, tmp_path: Path, signum: int, code: int, to_group: bool, isolation: str
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, DOCKERFILE)
    seconds = random.randrange(6000, 7000)  # names this test's sleep among all processes
    proc = _start(pybuild, ctx, seconds, "-t", "cancel:1", "--isolation", isolation)
    try:
        _wait_for_step(proc)
        assert _wait_for_process(f"sleep {seconds}"), "the step's sleep is not running"
        sent = time.monotonic()
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == code, err
    assert took < 10, f"the build took {took:.1f}s to stop"
    name = signal.Signals(signum).name
    assert f"build cancelled by {name}" in err and "Traceback" not in err, err
    assert processes_with(f"sleep {seconds}") == []
    _assert_store_clean(pybuild)
    assert pybuild("images").out.count("cancel") == 0  # nothing was tagged
    pybuild.build(ctx, "--build-arg", "S=0", "-t", "cancel:1")
    assert pybuild("run", "cancel:1", "cat", "/after").out == "after\n"
    _assert_store_clean(pybuild)


def test_signal_kills_the_steps_of_every_running_stage(pybuild: Pybuild, tmp_path: Path) -> None:
    seconds = random.randrange(7000, 8000)
    dockerfile = (
        "FROM busybox AS one\nARG S\nRUN echo step-started && sleep $S\n"
        "FROM busybox AS two\nARG S\nRUN echo step-started && sleep $((S + 1))\n"
        "FROM busybox\nCOPY --from=one /etc/hostname /a\nCOPY --from=two /etc/hostname /b\n"
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    proc = _start(pybuild, ctx, seconds, "--jobs", "2")
    try:
        _wait_for_step(proc)
        deadline = time.monotonic() + 30
        while not _both_running(seconds) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _both_running(seconds), "the two stages' steps are not both running"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert took < 10, f"the build took {took:.1f}s to stop"
    assert processes_with(f"sleep {seconds}") == []
    assert processes_with(f"sleep {seconds + 1}") == []
    _assert_store_clean(pybuild)


def _both_running(seconds: int) -> bool:
    return bool(processes_with(f"sleep {seconds}") and processes_with(f"sleep {seconds + 1}"))
