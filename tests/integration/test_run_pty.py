"""`pybuild run -it`: an interactive session driven through a real pty, and --init."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


class Session:
    """``pybuild run ARGS`` on the slave side of a pty we hold the master of."""

    def __init__(self, pybuild: Pybuild, *args: str) -> None:
        env = {**os.environ, "PYBUILD_ROOT": str(pybuild.root)}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child execs at once
            os.chdir(REPO)
            os.execvpe(sys.executable, [sys.executable, "-m", "builder.cli", *args], env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        self.buffer = b""

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def expect(self, token: bytes, timeout: float = 15) -> bytes:
        """Read until ``token``; returns what came before it and the token."""
        deadline = time.monotonic() + timeout
        while token not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {token!r} in time; got {self.buffer!r}")
            try:
                self.buffer += os.read(self.fd, 4096)
            except OSError:
                raise AssertionError(f"session ended before {token!r}: {self.buffer!r}") from None
        end = self.buffer.index(token) + len(token)
        seen, self.buffer = self.buffer[:end], self.buffer[end:]
        return seen

    def exit_status(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            with_data, _, _ = select.select([self.fd], [], [], 0.1)
            if with_data:
                with contextlib.suppress(OSError):
                    self.buffer += os.read(self.fd, 4096)
        os.kill(self.pid, 9)
        raise AssertionError(f"pybuild did not exit; output {self.buffer!r}")


def test_interactive_shell_relays_io_window_size_ctrl_c_and_exit_code(pybuild: Pybuild) -> None:
    session = Session(pybuild, "run", "-it", "busybox", "sh")
    session.expect(b"# ")  # type only once the shell reads: it flushes earlier input
    session.send(b"echo hel''lo $((6*7))\r")
    assert b"hello 42" in session.expect(b"hello 42")
    session.send(b"stty size\r")
    assert b"33 101" in session.expect(b"33 101")
    session.send(b"sleep 100; echo not-interrupted\r")
    session.expect(b"not-interrupted")  # the echo of the typed line
    time.sleep(0.5)
    started = time.monotonic()
    session.send(b"\x03")
    session.expect(b"# ", timeout=10)  # the prompt is back: sleep was interrupted
    assert time.monotonic() - started < 10
    session.send(b"echo alive\r")
    session.expect(b"alive\r\n")
    session.send(b"exit 3\r")
    assert session.exit_status() == 3
    assert b"not-interrupted" not in session.buffer


def test_init_reaps_orphaned_zombies(pybuild: Pybuild) -> None:
    # The command execs `sleep`, which never waits; an orphan (its parent subshell is
    # gone) exits: with --init PID 1 reaps it, without it stays a zombie (state Z).
    script = (
        "sh -c \"(sleep 0.1 &); sleep 0.6; ps -o stat,comm | grep -c '^Z' || true\" & exec sleep 1"
    )
    assert pybuild("run", "--init", "busybox", "sh", "-c", script).out.strip() == "0"
    without = pybuild("run", "busybox", "sh", "-c", script).out.strip()
    assert without == "1"  # the shell as PID 1 does not reap what it did not start


def test_sigterm_to_pybuild_reaches_the_container(pybuild: Pybuild) -> None:
    session = Session(
        pybuild,
        "run",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
    )
    session.expect(b"ready")
    os.kill(session.pid, 15)
    assert session.exit_status() == 7
    assert b"got-term" in session.buffer


def test_command_is_pid_1_by_default_as_in_docker_run(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, 'FROM busybox\nCMD ["sh", "-c", "echo pid=$$"]\n')
    pybuild.build(ctx, "-t", "pid:1")
    assert pybuild("run", "pid:1").out == "pid=1\n"
    assert pybuild("run", "--no-init", "pid:1").out == "pid=1\n"


def test_init_is_opt_in_and_runs_the_command_as_its_child(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, 'FROM busybox\nCMD ["sh", "-c", "echo pid=$$"]\n')
    pybuild.build(ctx, "-t", "pid:1")
    assert pybuild("run", "--init", "pid:1").out == "pid=2\n"
