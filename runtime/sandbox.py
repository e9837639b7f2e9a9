"""Run a :class:`ContainerSpec` in a fresh Linux sandbox and report how it ended.

The calling process never forks (the builder is multi-threaded): ``runtime.init`` is
started through ``subprocess``, or forked by a :class:`~runtime.forkclient.ForkServer`
(no new interpreter per sandbox), with the spec on a pipe and the container's stdio fds,
and does all namespace and mount work in its own children. Every mount lives in the
container's private mount namespace, so nothing is left on the host when it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import tempfile
from typing import IO, Any, Protocol

from runtime.errors import RuntimeFailure, SandboxError
from runtime.forkclient import ForkServer, InitFds, python_command, python_environment
from runtime.init import KILL_REQUEST, failure_from_dict
from runtime.spec import ContainerSpec, RunResult, spec_to_json, validate_spec


class _Init(Protocol):
    """The init's process: a ``subprocess.Popen``, or a fork server's ``ServedInit``."""

    @property
    def pid(self) -> int: ...
    def poll(self) -> int | None: ...
    def wait(self) -> int: ...
    def send_signal(self, signum: int) -> None: ...


class Sandbox:
    """A started container; :meth:`wait` collects it (later calls give the same outcome)."""

    def __init__(self, proc: _Init, status_r: int, init_stderr: IO[bytes]) -> None:
        self._proc = proc
        self._status_r = status_r
        self._init_stderr = init_stderr
        self._outcome: RunResult | RuntimeFailure | None = None

    @property
    def pid(self) -> int:
        """The host pid of the sandbox's outer init (the container's PID 1 is its child)."""
        return self._proc.pid

    def running(self) -> bool:
        """True until the sandbox (its init included) has exited."""
        return self._proc.poll() is None

    def send_signal(self, signum: int) -> None:
        """Deliver ``signum`` to the container (via its init; a second SIGINT/SIGTERM
        kills it, as PID 1 ignores signals it has no handler for)."""
        if self.running():
            self._proc.send_signal(signum)

    def kill(self) -> None:
        """Kill the container; its init still cleans up and reports."""
        self.send_signal(KILL_REQUEST)

    def wait(self) -> RunResult:
        """Block until the container exits; raises :class:`SandboxError` (or
        ``UserNotFound``) when it could not be set up."""
        if self._outcome is None:
            lost: RuntimeFailure | None = None
            try:
                returncode = self._proc.wait()  # if interrupted, nothing is consumed yet
            except RuntimeFailure as exc:  # its fork server died, and the init with it
                returncode, lost = -1, exc
            with os.fdopen(self._status_r, "rb") as status_file:
                raw = status_file.read()
            with self._init_stderr:
                self._init_stderr.seek(0)
                stderr = self._init_stderr.read().decode(errors="replace").strip()
            try:
                self._outcome = lost or _decode_status(raw, returncode, stderr)
            except RuntimeFailure as exc:
                self._outcome = exc
        if isinstance(self._outcome, RuntimeFailure):
            raise self._outcome
        return self._outcome


def run(
    spec: ContainerSpec,
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> RunResult:
    """Run ``spec`` to completion with the given stdio fds (None: inherit ours).

    Raises :class:`SandboxError` when set-up fails, ``UserNotFound`` for an unknown user.
    If interrupted (e.g. KeyboardInterrupt), the container is killed before returning.
    """
    box = start(spec, stdin=stdin, stdout=stdout, stderr=stderr)
    try:
        return box.wait()
    except BaseException:
        if box.running():  # interrupted while waiting: do not leave the container behind
            box.kill()
            with contextlib.suppress(RuntimeFailure):
                box.wait()
        raise


def start(
    spec: ContainerSpec,
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    own_process_group: bool = False,
    server: ForkServer | None = None,
) -> Sandbox:
    """Start ``spec`` and return at once; see :func:`run`.

    With ``own_process_group`` the init does not receive the terminal's signals (Ctrl-C)
    directly; the caller forwards them with :meth:`Sandbox.send_signal`. Without
    ``server``, the calling thread must outlive the container: the init is killed when
    the thread that started it exits (PR_SET_PDEATHSIG), so nothing outlives a crashed
    pybuild. With ``server`` the init is forked there and dies with the server, which
    dies (killing it first) when this process does or closes it.
    """
    validate_spec(spec)
    if spec.network == "default":
        raise SandboxError(
            "the default network must be made before the sandbox starts",
            hint="this is a pybuild bug: join the spec to a runtime.netns network first",
        )
    stdio = _stdio_copies((stdin, stdout, stderr))
    spec_r, spec_w = os.pipe()
    status_r, status_w = os.pipe()
    init_stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Sandbox.wait
    fds = InitFds(spec_r, status_w, (stdio[0], stdio[1], stdio[2]), init_stderr.fileno())
    # What fits in the pipe goes now, so the init need not wait for a round trip to us.
    pending = _write_ahead(spec_w, spec_to_json(spec).encode())
    try:
        if server is None:
            proc: _Init = _popen_init(fds, own_process_group)
        else:
            proc = server.launch(fds, own_process_group=own_process_group)
    except BaseException:
        for fd in (spec_w, status_r):
            os.close(fd)
        init_stderr.close()
        raise
    finally:
        for fd in (spec_r, status_w, *stdio):  # the init has its own copies now
            os.close(fd)
    with contextlib.suppress(BrokenPipeError), os.fdopen(spec_w, "wb") as spec_file:
        spec_file.write(pending)  # a dead init reports through wait()
    return Sandbox(proc, status_r, init_stderr)


def _write_ahead(fd: int, data: bytes) -> bytes:
    """Write what the pipe ``fd`` takes without blocking; return the rest."""
    os.set_blocking(fd, False)
    try:
        while data:
            data = data[os.write(fd, data) :]
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)
    return data


def _popen_init(fds: InitFds, own_process_group: bool) -> subprocess.Popen[bytes]:
    """``python -m runtime.init`` with ``fds``: a new interpreter."""
    command = python_command(
        "runtime.init",
        f"--spec-fd={fds.spec}",
        f"--status-fd={fds.status}",
        "--stdio={},{},{}".format(*fds.stdio),
    )
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fds.stderr,
            pass_fds=(fds.spec, fds.status, *fds.stdio),
            env=python_environment(),
            process_group=0 if own_process_group else None,
        )
    except OSError as exc:
        raise SandboxError(f"cannot start the sandbox init: {exc}") from exc


def _stdio_copies(fds: tuple[int | None, int | None, int | None]) -> list[int]:
    """Private copies of the container's stdin, stdout, stderr (None: ours)."""
    copies: list[int] = []
    try:
        for default, fd in enumerate(fds):
            copies.append(_dup_high(fd, default))
    except SandboxError:
        for fd in copies:
            os.close(fd)
        raise
    return copies


def _dup_high(fd: int | None, default: int) -> int:
    """A private copy of ``fd`` (or of our ``default``) numbered 3 or above, so it can be
    passed to the init whatever number it had; /dev/null if ours is closed."""
    try:
        return fcntl.fcntl(default if fd is None else fd, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError:
        if fd is not None:
            raise SandboxError(f"stdio fd {fd} is not open") from None
        null = os.open(os.devnull, os.O_RDWR)
        try:
            return fcntl.fcntl(null, fcntl.F_DUPFD_CLOEXEC, 3)
        finally:
            os.close(null)


def _decode_status(raw: bytes, returncode: int, stderr: str) -> RunResult:
    """Turn the init's JSON status into a result or the set-up error it describes."""
    try:
        body: dict[str, Any] = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    if "failure" in body:
        raise failure_from_dict(body["failure"])
    if "exit_code" not in body:
        how = (
            f"was killed by signal {-returncode}" if returncode < 0 else f"exited with {returncode}"
        )
        raise SandboxError(
            f"the sandbox init {how} without reporting a status",
            hint=stderr[-2000:] or None,
        )
    sig = body.get("signal")
    error = body.get("error")
    return RunResult(
        exit_code=int(body["exit_code"]),
        signal=int(sig) if sig is not None else None,
        error=str(error) if error is not None else None,
    )
