"""`pybuild run` in the foreground relays SIGINT/SIGTERM to the container; a second one
kills it (as PID 1 the command ignores signals it has no handler for, as in docker), and
pybuild then exits 128+N. With --init the init passes the first one to the command."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _start(pybuild: Pybuild, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "run", *args],
        cwd=REPO,
        env={**os.environ, "PYBUILD_ROOT": str(pybuild.root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    marker = " ".join(args[-2:])  # the command: sleep N
    deadline = time.monotonic() + 30
    while not _running(marker) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(marker), f"{marker} did not start"
    return proc


def _finish(proc: subprocess.Popen[str]) -> str:
    try:
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return err


def _running(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                if cmdline.strip() == marker.encode():  # not pybuild's own command line
                    return True
            except OSError:
                continue
    return False


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_second_signal_kills_a_pid_1_that_ignores_the_first(
    pybuild: Pybuild, signum: int, code: int
) -> None:
    seconds = random.randrange(5000, 6000)
    proc = _start(pybuild, "busybox", "sleep", str(seconds))  # no shell: it may trap SIGINT
    proc.send_signal(signum)
    time.sleep(1)
    assert proc.poll() is None, "PID 1 has no handler: the first signal is ignored, as in docker"
    sent = time.monotonic()
    proc.send_signal(signum)
    err = _finish(proc)
    assert proc.returncode == code, err
    assert time.monotonic() - sent < 5
    assert f"after a second {signal.Signals(signum).name}" in err and "Traceback" not in err
    assert not _running(f"sleep {seconds}")


def test_with_init_the_first_sigint_stops_the_command(pybuild: Pybuild) -> None:
    seconds = random.randrange(5000, 6000)
    proc = _start(pybuild, "--init", "busybox", "sleep", str(seconds))
    proc.send_signal(signal.SIGINT)
    err = _finish(proc)
    assert proc.returncode == 130, err
    assert not _running(f"sleep {seconds}")


def test_sigint_to_pybuild_run_reaches_the_container(pybuild: Pybuild) -> None:
    script = "trap 'echo got-int; exit 5' INT; echo ready; while true; do sleep 0.1; done"
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "run", "--rm", "busybox", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYBUILD_ROOT": str(pybuild.root)},
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 5, err
    assert b"got-int" in out and b"Traceback" not in err
