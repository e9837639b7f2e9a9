"""The caller's side of :mod:`runtime.forkserver`: start inits without a new interpreter.

:class:`ForkServer` starts the server process at its first :meth:`ForkServer.launch`
(through ``subprocess``: the caller runs threads and must not fork itself) and hands it
each init's fds over a socket (``SCM_RIGHTS``); threads may launch concurrently, the
request channel is locked for the send only. Each launch gives a :class:`ServedInit`,
the part of ``subprocess.Popen`` that :class:`runtime.sandbox.Sandbox` uses (pid, poll,
wait, send_signal), backed by a pidfd of the init and the request's reply socket.

A process that forked a server at its start (:mod:`runtime.forkearly`, the warm
builder's builds) has it adopted instead of starting one.

If this process dies, the server sees end of file and kills every init it started; if
the server dies, its inits die with it (PR_SET_PDEATHSIG) and every wait and launch
raises :class:`SandboxError` saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runtime import forkearly
from runtime.errors import SandboxError

# The directory holding the ``runtime`` package, so ``-m runtime.init`` (or
# ``-m runtime.forkserver``) always imports this copy of it, installed or not.
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
_CLOSE_TIMEOUT = 10.0  # seconds the server gets to exit once told to


def python_environment() -> dict[str, str]:
    """Our environment, with this copy of the runtime first on ``PYTHONPATH``."""
    env = dict(os.environ)
    parts = [_PACKAGE_PARENT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def python_command(module: str, *args: str) -> list[str]:
    """``python -S -m module args``: our runtime needs only the standard library and
    ``PYTHONPATH`` (``python_environment``), so its interpreters skip ``site`` (the
    site-packages scan and every ``.pth`` file's imports) when they start."""
    return [sys.executable, "-S", "-m", module, *args]


@dataclass(frozen=True)
class InitFds:
    """What an init gets: its spec pipe, its status pipe, the container's stdin, stdout,
    stderr, and the init's own stderr. The caller keeps (and closes) its copies."""

    spec: int
    status: int
    stdio: tuple[int, int, int]
    stderr: int


class ServedInit:
    """An init the server forked: ``pid``, ``poll``, ``wait``, ``send_signal`` as
    ``subprocess.Popen`` has them (``returncode``: ``-N`` when killed by signal N)."""

    def __init__(self, server: ForkServer, reply: socket.socket, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._server = server
        self._reply = reply
        self._pidfd = pidfd
        self._returncode: int | None = None
        self._lost = False
        # Reentrant: a signal handler (a build's cancel) may kill it on a thread inside.
        self._lock = threading.RLock()

    def poll(self) -> int | None:
        """The return code once the server has reaped the init, else None."""
        with self._lock:
            if self._returncode is None:
                try:
                    raw = self._reply.recv(256, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    return None
                self._settle(raw)
            return self._returncode

    def wait(self) -> int:
        """Block until the init is reaped; :class:`SandboxError` if the server died
        first (the init died with it). Nothing is consumed before the end (only peeked),
        so an interrupted wait can be repeated."""
        if self._returncode is None:
            try:
                raw = self._reply.recv(256, socket.MSG_PEEK)  # outside the lock: it blocks
            except OSError:  # closed meanwhile: a poll() on another thread settled it
                if self._returncode is None:
                    raise
                raw = b""
            with self._lock:
                if self._returncode is None:
                    self._settle(raw)
        if self._lost:
            raise self._server.gone("the sandbox server exited while the sandbox ran")
        return self._returncode if self._returncode is not None else -signal.SIGKILL

    def send_signal(self, signum: int) -> None:
        """Signal the init through its pidfd (never a reused pid); nothing once reaped."""
        with self._lock:
            if self.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, signum)

    def _settle(self, raw: bytes) -> None:
        """Record the server's ``returncode`` message and let go of the fds."""
        try:
            body: dict[str, Any] = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        code = body.get("returncode")
        self._reply.close()
        os.close(self._pidfd)
        self._lost = not isinstance(code, int)  # end of file: the server died
        self._returncode = code if isinstance(code, int) else -signal.SIGKILL


class ForkServer:
    """Starts inits through one :mod:`runtime.forkserver` process, started lazily.

    :meth:`close` ends the server once no init it started is wanted any more (those
    still running are killed). A server that died is not restarted: every launch then
    raises :class:`SandboxError` saying how it ended.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | forkearly.EarlyProcess | None = None
        self._control: socket.socket | None = None
        self._stderr: IO[bytes] | None = None

    def start(self) -> None:
        """Start the server now, so that the first ``launch`` finds it running (a build
        starts it behind other work). A failure is left for ``launch`` to report."""
        with self._lock, contextlib.suppress(SandboxError):
            self._started()

    def launch(self, fds: InitFds, *, own_process_group: bool) -> ServedInit:
        """Fork an init with ``fds``; in its own process group, or in ours."""
        header = {"own_process_group": own_process_group, "pgid": os.getpgrp()}
        request = json.dumps({**header, "env": python_environment()}).encode()
        reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                control = self._started()
                try:
                    sent = [theirs.fileno(), fds.spec, fds.status, *fds.stdio, fds.stderr]
                    socket.send_fds(control, [request], sent)
                except OSError as exc:
                    raise self.gone(f"cannot start the sandbox init ({exc.strerror})") from None
        except BaseException:
            reply.close()
            raise
        finally:
            theirs.close()
        return self._started_init(reply)

    def _started_init(self, reply: socket.socket) -> ServedInit:
        try:
            raw, pidfds, _flags, _addr = socket.recv_fds(reply, 4096, 1, socket.MSG_CMSG_CLOEXEC)
            body: dict[str, Any] = json.loads(raw) if raw else {}
        except BaseException:
            reply.close()
            raise
        if "pid" in body and len(pidfds) == 1:
            return ServedInit(self, reply, int(body["pid"]), pidfds[0])
        for fd in pidfds:
            os.close(fd)
        reply.close()
        if "error" in body:
            raise SandboxError(f"cannot start the sandbox init: {body['error']}")
        raise self.gone("cannot start the sandbox init")

    def _started(self) -> socket.socket:
        if self._control is not None and self._proc is not None:
            if self._proc.poll() is not None:
                raise self.gone("cannot start the sandbox init")
            return self._control
        early = forkearly.take()
        if early is not None:  # forked by this process at its start (the warm builder)
            self._proc, self._control, self._stderr = early.proc, early.control, early.stderr
            return early.control
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        command = python_command("runtime.forkserver", f"--socket-fd={theirs.fileno()}")
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=(theirs.fileno(),),
                env=python_environment(),
                process_group=0,  # a terminal's Ctrl-C is for us to handle, not for it
            )
        except OSError as exc:
            ours.close()
            stderr.close()
            raise SandboxError(f"cannot start the sandbox init: {exc}") from exc
        finally:
            theirs.close()
        self._control, self._stderr = ours, stderr
        return ours

    def gone(self, what: str) -> SandboxError:
        """The error for a server that is not there any more: ``what``, how it ended,
        and what it wrote to stderr."""
        how = "is gone"
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=_CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
        detail = ""
        if self._stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                self._stderr.seek(0)
                detail = self._stderr.read().decode(errors="replace").strip()[-2000:]
        return SandboxError(f"{what}: the sandbox server {how}", hint=detail or None)

    def close(self) -> None:
        """End the server (it kills the inits still running) and wait for it."""
        with self._lock:
            control, proc, stderr = self._control, self._proc, self._stderr
            self._control = self._proc = self._stderr = None
        if control is not None:
            control.close()
        if proc is not None:
            try:
                proc.wait(timeout=_CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if stderr is not None:
            stderr.close()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
