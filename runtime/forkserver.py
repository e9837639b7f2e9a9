"""The sandbox fork server: ``python -m runtime.forkserver --socket-fd N``.

A new ``python -m runtime.init`` per sandbox costs an interpreter and the runtime's
imports, a hundred milliseconds or more, and the builder may not fork itself (it runs
threads). So a build starts this process once (:mod:`runtime.forkclient`, at its first
sandbox): it imports :mod:`runtime.init` while a forked child compiles the seccomp filter
(:func:`prepare`), then forks one outer init per request, which runs
:func:`runtime.init.run_from_fds` as ``-m runtime.init`` would. It runs a single thread,
so forking it is safe.

A build's first RUN waits for this start, so the server imports only what every init
runs (``tests/unit/test_forkserver_imports.py`` pins what it leaves out) and, once it
is idle, what only some inits run (:data:`LATER_IMPORTS`), so that no init imports it
after the fork, once per RUN.

Protocol, over ``AF_UNIX`` ``SOCK_SEQPACKET`` sockets (one datagram per message):

- request, on the control socket (fd N): JSON ``{"own_process_group": bool, "pgid": int,
  "env": {...}}`` with seven fds: the request's own reply socket, the init's spec pipe,
  status pipe, the container's stdin, stdout, stderr, and the file for the init's stderr;
- on the reply socket: ``{"pid": N}`` with a pidfd of the init (or ``{"error": text}``
  when it could not be forked), then ``{"returncode": N}`` once it is reaped, as
  ``subprocess`` reports it (``-N``: killed by signal N); then the socket is closed.

Lifetime: end of file on the control socket (the client closed it, or died) makes the
server SIGKILL every init still running and exit; an init's PID 1 dies with its init
(PR_SET_PDEATHSIG), and an init dies with the server the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
from collections.abc import Sequence

from runtime import linux
from runtime.errors import SandboxError
from runtime.seccomp import compile_default_filter

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without loading typing (the fork server's start)
if TYPE_CHECKING:
    from typing import Any, NoReturn

USAGE = "python -m runtime.forkserver --socket-fd N"
REQUEST_FDS = 7  # reply socket, spec, status, stdin, stdout, stderr, init stderr
MAX_REQUEST = 1 << 20  # bytes of JSON a request may carry (its environment)
# What only some inits run: the copy snapshotter, resource limits' cgroups. Imported
# when the server is idle, so that an init needing them finds them loaded.
LATER_IMPORTS = ("runtime.cgroups", "runtime.snapshot")


class _Init:
    """An init the server forked: its pid, a pidfd of it, the request's reply socket."""

    __slots__ = ("pid", "pidfd", "reply")

    def __init__(self, pid: int, pidfd: int, reply: socket.socket) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.reply = reply


def main(argv: Sequence[str] | None = None) -> int:
    """Serve on the control socket ``--socket-fd N`` names (no argument parser: a build's
    first RUN waits for this process to start)."""
    fd = socket_fd(sys.argv[1:] if argv is None else argv)
    if fd is None:
        raise SystemExit(f"usage: {USAGE}")
    control = socket.socket(fileno=fd)
    serve(control, prepare())
    return 0


def prepare() -> bytes | None:
    """Import what every init runs while a forked child compiles the seccomp filter (on
    another CPU, if there is one); return the filter, or None when it cannot be
    compiled (then each init compiles it, and reports why it cannot)."""
    compiling = _FilterCompiler()
    import runtime.init  # noqa: F401 - loaded here, before any init is forked

    return compiling.result()


class _FilterCompiler:
    """:func:`runtime.seccomp.compile_default_filter` in a forked child, its program
    sent back through a pipe: the same bytes, compiled while the server imports."""

    def __init__(self) -> None:
        self._read, write = os.pipe()
        try:
            self._pid: int | None = os.fork()
        except OSError:
            self._pid = None  # compiled here, in result()
        if self._pid == 0:
            _compile_into(write)
        os.close(write)

    def result(self) -> bytes | None:
        """The program, or None when it could not be compiled."""
        with os.fdopen(self._read, "rb") as pipe:
            program = pipe.read()  # up to end of file: the child has exited or written all
        if self._pid is None:
            with contextlib.suppress(SandboxError):
                return compile_default_filter()
            return None
        _, status = os.waitpid(self._pid, 0)
        return program if os.waitstatus_to_exitcode(status) == 0 and program else None


def _compile_into(write: int) -> NoReturn:
    """In the compiling child: the filter to ``write``; exit 0 once it is all written
    (any failure: 1, and the server goes on without a filter)."""
    code = 1
    try:
        with os.fdopen(write, "wb") as pipe:
            pipe.write(compile_default_filter())
        code = 0
    finally:
        os._exit(code)


def socket_fd(argv: Sequence[str]) -> int | None:
    """The N of ``--socket-fd N`` or ``--socket-fd=N``, the one argument; None when
    ``argv`` is anything else."""
    if len(argv) == 2 and argv[0] == "--socket-fd":
        value = argv[1]
    elif len(argv) == 1 and argv[0].startswith("--socket-fd="):
        value = argv[0].removeprefix("--socket-fd=")
    else:
        return None
    return int(value) if value.isascii() and value.isdigit() else None


def serve(control: socket.socket, program: bytes | None) -> None:
    """Fork an init per request until the control socket reaches end of file."""
    inits: dict[int, _Init] = {}  # by pidfd
    later = list(LATER_IMPORTS)
    with selectors.DefaultSelector() as selector:
        selector.register(control, selectors.EVENT_READ)
        try:
            while True:
                ready = selector.select(0 if later else None)
                if not ready and later:  # idle: nothing to serve or reap
                    with contextlib.suppress(ImportError):  # an init needing it says so
                        __import__(later.pop(0))
                for key, _ in ready:
                    if key.fileobj is control:
                        if not _accept(control, selector, inits, program):
                            return
                    else:
                        _reap(inits.pop(key.fd), selector)
        finally:
            for child in inits.values():
                _kill(child)


def _accept(
    control: socket.socket,
    selector: selectors.BaseSelector,
    inits: dict[int, _Init],
    program: bytes | None,
) -> bool:
    """Serve one request; False at end of file."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(
            control, MAX_REQUEST, REQUEST_FDS, socket.MSG_CMSG_CLOEXEC
        )
    except InterruptedError:
        return True
    if not data and not fds:
        return False
    if len(fds) != REQUEST_FDS:
        for fd in fds:
            os.close(fd)
        return True  # a malformed request: its reply socket (if any) sees end of file
    reply = socket.socket(fileno=fds[0])
    try:
        child = _fork_init(json.loads(data), fds, reply, program)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _send(reply, {"error": str(exc)})
        reply.close()
        return True
    finally:
        for fd in fds[1:]:  # the init has its own copies
            os.close(fd)
    try:
        socket.send_fds(reply, [json.dumps({"pid": child.pid}).encode()], [child.pidfd])
    except OSError:  # the client is gone: so goes what it asked for
        _kill(child)
        os.close(child.pidfd)
        reply.close()
        return True
    inits[child.pidfd] = child
    selector.register(child.pidfd, selectors.EVENT_READ)
    return True


def _fork_init(
    request: dict[str, Any], fds: list[int], reply: socket.socket, program: bytes | None
) -> _Init:
    env = {str(k): str(v) for k, v in request["env"].items()}
    group = 0 if request["own_process_group"] else int(request["pgid"])
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        _become_init(server, fds, group, env, program)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return _Init(pid, pidfd, reply)


def _become_init(
    server: int, fds: list[int], group: int, env: dict[str, str], program: bytes | None
) -> NoReturn:
    """In the forked child: take the request's fds as ``-m runtime.init`` would get
    them from ``subprocess`` (stdin and stdout /dev/null), and run the init."""
    from runtime import init  # loaded by prepare(), before any fork

    code = init.SETUP_FAILED
    try:
        linux.set_pdeathsig(signal.SIGKILL)  # the init sets it again; this covers until then
        if os.getppid() != server:
            os._exit(code)  # the server died already
        _reply, spec_r, status_w, stdin, stdout, stderr, init_stderr = fds
        with contextlib.suppress(OSError):  # the caller's group may be gone: keep ours
            os.setpgid(0, group)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(init_stderr, 2)
        keep = (spec_r, status_w, stdin, stdout, stderr)
        _close_all_but(keep)
        os.environ.clear()
        os.environ.update(env)
        stdio = (stdin, stdout, stderr)
        code = init.run_from_fds(spec_r, status_w, stdio, seccomp_program=program)
    except BaseException:  # a bug of ours: the caller shows the init's stderr
        with contextlib.suppress(BaseException):
            import traceback  # loaded by runtime.init

            traceback.print_exc()
    finally:
        os._exit(code)


def _close_all_but(keep: Sequence[int]) -> None:
    """Close every fd from 3 up except ``keep`` (the server's sockets, other requests')."""
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _reap(child: _Init, selector: selectors.BaseSelector) -> None:
    selector.unregister(child.pidfd)
    _, status = os.waitpid(child.pid, 0)
    with child.reply:
        _send(child.reply, {"returncode": os.waitstatus_to_exitcode(status)})
    os.close(child.pidfd)


def _kill(child: _Init) -> None:
    with contextlib.suppress(OSError):
        signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child.pid, 0)


def _send(reply: socket.socket, body: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the client is gone: nobody to tell
        reply.send(json.dumps(body).encode())


if __name__ == "__main__":
    raise SystemExit(main())
