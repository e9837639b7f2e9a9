"""A build killed with SIGKILL mid-RUN leaves nothing outside the store, and the store's
next build removes what it left: the secret on /dev/shm and the sandbox's scratch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

SHM = Path("/dev/shm")


def _secret_dirs(value: str) -> list[Path]:
    """The dirs on /dev/shm holding our secret (other tests may have their own)."""
    found = []
    for entry in SHM.glob("pybuild-secret-*"):
        try:
            if (entry / "secret").read_text() == value:
                found.append(entry)
        except OSError:
            continue
    return found


def _sandbox_scratch(store: Path) -> list[Path]:
    """The sandbox scratch dirs in the store's temp dirs (tmp/step-*/scratch/...)."""
    return list(store.glob("tmp/*/*/pybuild-sandbox-*"))


def _wait_for(predicate: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the RUN to start")


def test_killed_build_leaves_its_secret_and_scratch_for_the_next_build_to_sweep(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    value = f"secret-{uuid.uuid4().hex}"
    (tmp_path / "secret.txt").write_text(value)
    ctx = write_context(
        tmp_path / "ctx", {}, "FROM busybox\nRUN --mount=type=secret,id=s sleep 300\n"
    )
    private_tmp = tmp_path / "tmpdir"
    private_tmp.mkdir()
    env = {**os.environ, "PYBUILD_ROOT": str(pybuild.root), "TMPDIR": str(private_tmp)}
    command = [sys.executable, "-m", "builder.cli", "build", "--progress", "plain"]
    proc = subprocess.Popen(
        [*command, "--secret", f"id=s,src={tmp_path / 'secret.txt'}", str(ctx)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: _secret_dirs(value) and _sandbox_scratch(pybuild.root))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # pybuild alone: its sandbox dies with it
        proc.wait(timeout=60)
    assert _secret_dirs(value), "the secret dir should outlive the killed build"
    assert not list(private_tmp.iterdir())  # the sandbox's scratch is in the store, not $TMPDIR
    time.sleep(2.5)  # past the grace that protects entries made an instant ago
    pybuild.build(write_context(tmp_path / "next", {}, "FROM busybox\n"))
    assert _secret_dirs(value) == []
    assert _sandbox_scratch(pybuild.root) == []
