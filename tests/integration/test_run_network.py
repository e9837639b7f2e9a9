"""Audit of issue 5 through the CLI: SIGINT forwarding without a tty, --network host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


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


def test_run_network_host_sees_the_hosts_interfaces(pybuild: Pybuild) -> None:
    out = pybuild("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net").out
    assert set(out.split()) == set(os.listdir("/sys/class/net"))
    assert len(out.split()) > 1  # more than lo, unlike --network none


def test_run_network_none_sees_only_loopback(pybuild: Pybuild, tmp_path: Path) -> None:
    out = pybuild("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").out
    assert out.split() == ["lo"]
