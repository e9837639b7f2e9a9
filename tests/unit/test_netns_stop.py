"""Stopping pasta: a process that has exited counts as gone even before it is reaped
(pasta is an orphan; whoever reaps orphans may do so seconds later)."""

from __future__ import annotations

import os
import subprocess
import time

from runtime.netns import _exited


def test_a_running_process_has_not_exited() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not _exited(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_an_unreaped_zombie_has_exited() -> None:
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # not waited for: it stays a zombie
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    try:
        os.kill(proc.pid, 0)  # kill() still finds it: the old check waited here
        assert _exited(proc.pid)
    finally:
        proc.wait()


def test_a_reaped_process_has_exited() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert _exited(proc.pid)
