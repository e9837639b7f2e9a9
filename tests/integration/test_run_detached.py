"""`pybuild run -d` and the container commands: ps, logs, stop, rm; records in the store
outlive the CLI process that started the container."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

TRAP = 'echo started; trap "echo bye; exit 5" TERM; while true; do sleep 0.1; done'


def wait_for(pybuild: Pybuild, name: str, text: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pybuild("logs", name).out
        if text in out:
            return out
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in the logs of {name}")


def test_detached_container_is_listed_logged_stopped_and_removed(pybuild: Pybuild) -> None:
    cid = pybuild("run", "-d", "--name", "web", "busybox", "sh", "-c", TRAP).out.strip()
    assert len(cid) == 64
    ps = pybuild("ps").out
    assert cid[:12] in ps and "web" in ps and "Up" in ps
    wait_for(pybuild, "web", "started")
    pybuild("stop", "web")
    assert pybuild("logs", cid[:8]).out == "started\nbye\n"
    assert "web" not in pybuild("ps").out
    assert "Exited (5)" in pybuild("ps", "-a").out
    pybuild("rm", "web")
    assert "web" not in pybuild("ps", "-a").out
    assert not (pybuild.root / "containers" / cid).exists()


def test_stop_uses_the_images_stopsignal(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nSTOPSIGNAL SIGUSR1\n")
    pybuild.build(ctx, "-t", "usr1:1")
    script = 'trap "echo got-usr1; exit 9" USR1; echo up; while true; do sleep 0.1; done'
    pybuild("run", "-d", "--name", "u", "usr1:1", "sh", "-c", script)
    wait_for(pybuild, "u", "up")
    pybuild("stop", "u")
    assert "got-usr1" in pybuild("logs", "u").out
    assert "Exited (9)" in pybuild("ps", "-a").out


def test_stop_kills_after_the_timeout_when_the_signal_is_ignored(pybuild: Pybuild) -> None:
    pybuild("run", "-d", "--no-init", "--name", "stubborn", "busybox", "sleep", "100")
    started = time.monotonic()
    pybuild("stop", "-t", "1", "stubborn")  # sleep as PID 1 ignores SIGTERM
    assert 1 <= time.monotonic() - started < 10
    assert "Exited (137)" in pybuild("ps", "-a").out


def test_logs_follow_streams_until_the_container_exits(pybuild: Pybuild) -> None:
    script = "for i in 1 2 3; do echo line$i; sleep 0.3; done"
    pybuild("run", "-d", "--name", "counter", "busybox", "sh", "-c", script)
    assert pybuild("logs", "-f", "counter", timeout=30).out == "line1\nline2\nline3\n"
    assert "Exited (0)" in pybuild("ps", "-a").out


def test_rm_refuses_a_running_container_unless_forced(pybuild: Pybuild) -> None:
    pybuild("run", "-d", "--name", "busy", "busybox", "sleep", "100")
    refused = pybuild("rm", "busy", ok=False)
    assert refused.code != 0 and "is running" in refused.err
    pybuild("rm", "-f", "busy")
    assert "busy" not in pybuild("ps", "-a").out


def test_names_are_unique_and_unknown_names_are_errors(pybuild: Pybuild) -> None:
    pybuild("run", "-d", "--name", "one", "busybox", "true")
    taken = pybuild("run", "-d", "--name", "one", "busybox", "true", ok=False)
    assert taken.code == 125 and "already in use" in taken.err
    missing = pybuild("logs", "nope", ok=False)
    assert missing.code != 0 and "does not exist" in missing.err
    assert "Traceback" not in taken.err + missing.err


def test_detached_rm_flag_removes_the_record_on_exit(pybuild: Pybuild) -> None:
    cid = pybuild("run", "-d", "--rm", "busybox", "true").out.strip()
    deadline = time.monotonic() + 15
    while (pybuild.root / "containers" / cid).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (pybuild.root / "containers" / cid).exists()


def test_detached_set_up_failure_is_reported_with_125(pybuild: Pybuild) -> None:
    result = pybuild("run", "-d", "-u", "nobody-here", "busybox", "true", ok=False)
    assert result.code == 125
    assert "nobody-here" in result.err and "Traceback" not in result.err


def test_detach_with_a_tty_is_refused_clearly(pybuild: Pybuild) -> None:
    result = pybuild("run", "-dit", "busybox", "sh", ok=False)
    assert result.code == 125 and "-d with -i/-t is not supported" in result.err
