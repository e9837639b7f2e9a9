"""A sandbox fork server forked from a process that already has the runtime loaded.

:class:`runtime.forkclient.ForkServer` starts :mod:`runtime.forkserver` as a new
interpreter at a build's first RUN: ~70 ms of start-up, imports and seccomp compilation
that the first RUN waits for. A process that keeps the runtime loaded (the warm
builder, ``builder.cli.warm_server``) can do better: it compiles the seccomp program once
(:func:`compile_filter`), and each build forked from it forks the server from itself
once it has entered its namespaces, while it still runs a single thread
(:func:`fork_now`, called by ``builder.api.build``). The build's
``ForkServer`` then adopts that process (:func:`take`) instead of starting one; a build
that runs no sandbox never uses it, and it exits when the build process does (end of
file on its control socket), as a started one would.

``ForkServer`` imports this module in every build, so it loads the server's modules only
in the functions that need them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import threading
import time
from typing import IO

from runtime.errors import SandboxError

_POLL = 0.01  # seconds between checks while waiting for the server with a timeout


class _Program:
    __slots__ = ("bytes",)

    def __init__(self, program: bytes | None) -> None:
        self.bytes = program


_program: _Program | None = None  # set by compile_filter: fork_now forks only after it
_ready: Early | None = None


def compile_filter() -> None:
    """Compile the default seccomp program now, for every server :func:`fork_now` forks
    (one that cannot be compiled is None, and each init then reports why), and turn
    :func:`fork_now` on for this process and the processes forked from it."""
    from runtime.seccomp import compile_default_filter

    global _program
    program = None
    with contextlib.suppress(SandboxError):
        program = compile_default_filter()
    _program = _Program(program)


def fork_now() -> None:
    """Fork the fork server from this process, for this process's first sandbox, when
    :func:`compile_filter` ran here or in a parent (the warm builder); else nothing.

    A build calls it once it is in the namespaces its sandboxes share (its mount
    namespace: the server must see the mounts the build makes), while it runs a single
    thread; with more threads it does nothing. The child serves at once, without
    returning. A failure leaves nothing behind, and the build starts its server as usual.
    """
    global _ready
    if _program is None or _ready is not None or threading.active_count() != 1:
        return
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - ForkServer.close closes it
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        stderr.close()
        return
    if pid == 0:
        _serve(theirs, stderr)  # never returns
    theirs.close()
    _ready = Early(EarlyProcess(pid), ours, stderr)


def _serve(control: socket.socket, stderr: IO[bytes]) -> None:
    code = 1
    try:
        from runtime import forkserver

        os.setpgid(0, 0)  # a terminal's Ctrl-C is for the build to handle, not for it
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(stderr.fileno(), 2)
        forkserver._close_all_but([control.fileno()])
        assert _program is not None  # fork_now forks only after compile_filter
        forkserver.serve(control, _program.bytes)
        code = 0
    finally:
        os._exit(code)


def take() -> Early | None:
    """The server :func:`fork_now` forked, once; None when there is none."""
    global _ready
    ready, _ready = _ready, None
    return ready


class Early:
    """A forked fork server: its process, the control socket and its stderr file."""

    __slots__ = ("control", "proc", "stderr")

    def __init__(self, proc: EarlyProcess, control: socket.socket, stderr: IO[bytes]) -> None:
        self.proc, self.control, self.stderr = proc, control, stderr


class EarlyProcess:
    """The part of ``subprocess.Popen`` ``ForkServer`` uses, for a child forked here."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                done, status = self.pid, 0
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"fork server {self.pid}", timeout or 0.0)
            time.sleep(_POLL)
        return code

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
