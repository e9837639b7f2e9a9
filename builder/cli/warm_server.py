"""``pybuild warm``: keep the builder imported, and run each build a client hands over in a
fork of it (``builder.cli.warm_client`` is the other end, ``builder.cli.warm_wire`` the
protocol).

A build forked from here is the command the client would have run: the worker takes the
client's standard streams, working directory, environment, umask and arguments, and runs
``builder.cli.main.main`` as a new ``pybuild`` process would; it skips the interpreter's
start-up and the ~0.15 s of imports, and forks its sandbox fork server from itself
(``runtime.forkearly``, with the seccomp program the server compiled once) instead of
starting one as a new interpreter at its first RUN. Each build has a process of its own,
so nothing one build leaves in memory reaches the next; the server itself never builds.
What differs
from a command run on its own: the build's parent process, session, cgroup and resource
limits are the server's, not the client's shell's.

Only the user serving it may connect (the socket is mode 0600 in the private store root,
and the peer's uid is checked), and only the image commands run here (``SERVED``:
build, save, load, images, tag, rmi); every other command, and a client of another
pybuild install or of another mount namespace (where the paths it names may be other
files), is told ``no`` and runs on its own. When the
installed code changes under it, the server stops rather than build with the old code.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import importlib
import io
import os
import pkgutil
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from builder.cli.foreground import log, stop_on_sigterm
from builder.cli.main import command_of
from builder.cli.warm_wire import mount_namespace, receive_request, send_line, socket_path
from builder.errors import UsageError
from builder.images.root import default_root
from runtime import forkearly

PACKAGES = ("builder", "cache", "runtime", "fstree")
# Commands that read and write the store and the files they are given, nothing else: a
# container (`run`, `exec`...) wants the client's terminal, session and cgroup, so those
# run on their own.
SERVED = frozenset({"build", "save", "load", "images", "tag", "rmi"})
ACCEPT_TIMEOUT = 1.0  # seconds between reaps of finished workers when no client comes
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the NUL


def add_warm(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Keep a warm builder for the store (--root, else $PYBUILD_ROOT): while it runs, "
        "`pybuild build` (and save, load, images, tag, rmi) on that store runs in a fork "
        "of it, without the interpreter start-up and imports (~0.2 s); images, cache "
        "records and output are the same as without it. Runs in the foreground until "
        "interrupted; PYBUILD_NO_WARM=1 makes a command ignore it."
    )


def cmd_warm(args: argparse.Namespace) -> int:
    from builder.images.store import Storage

    root: Path = args.root or default_root()
    path = socket_path(root)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise UsageError(
            f"{path}: the socket path is longer than the {MAX_SOCKET_PATH} bytes a unix "
            "socket allows",
            hint="use a store root with a shorter path (--root or $PYBUILD_ROOT)",
        )
    Storage.open(root, warn=log).close()  # the root exists and is private
    modules = preload()
    forkearly.compile_filter()
    stamp = fingerprint(modules)
    # What the imports made lives as long as the server: out of the collector's way, so a
    # build's full collections do not walk it and its pages stay shared with the server.
    gc.collect()
    gc.freeze()
    listener = _listen(path)
    log(f"pybuild warm: {len(modules)} modules loaded; serving {root} on {path}")
    stop_on_sigterm()
    workers: set[int] = set()
    try:
        while True:
            _reap(workers)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                if not _same_user(conn):
                    continue
                if fingerprint(modules) != stamp:
                    send_line(conn, "no the installed code changed")
                    log("pybuild warm: the installed code changed; stopping (start it again)")
                    return 0
                workers.add(_fork_worker(conn, listener))
    except KeyboardInterrupt:
        log("pybuild warm: stopped")
        return 0
    finally:
        _unlink_if_ours(path, listener)
        listener.close()


def preload(packages: Sequence[str] = PACKAGES) -> list[str]:
    """Import every module of our packages (what any build may need), return their names.

    A module whose optional dependency is missing is left out; a build that needs it
    imports it (and fails) as it would without the server."""
    loaded: list[str] = []
    for name in packages:
        package = importlib.import_module(name)
        loaded.append(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if info.name.endswith(".__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except ImportError:
                continue
            loaded.append(info.name)
    return loaded


def fingerprint(modules: Sequence[str]) -> tuple[tuple[str, int, int], ...]:
    """The source files of ``modules`` with their sizes and change times: what the
    server compares before each build to notice an upgrade or an edit."""
    files = []
    for name in modules:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path is None:
            continue
        try:
            st = os.stat(path)
        except OSError:
            files.append((path, -1, -1))
            continue
        files.append((path, st.st_size, st.st_mtime_ns))
    return tuple(files)


def _listen(path: Path) -> socket.socket:
    from builder.engine.server import bind

    busy = UsageError(
        f"a warm builder already serves this store ({path})",
        hint="stop that one first, or use another --root",
    )
    listener = bind(path, None, busy=busy)
    listener.settimeout(ACCEPT_TIMEOUT)
    return listener


def _unlink_if_ours(path: Path, listener: socket.socket) -> None:
    try:
        if path.is_socket() and listener.getsockname() == str(path):
            path.unlink()
    except OSError:
        pass


_PEERCRED = struct.Struct("3i")


def _same_user(conn: socket.socket) -> bool:
    """Whether the client runs as the serving user (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, _gid = _PEERCRED.unpack(creds)
    if uid == os.geteuid():
        return True
    log(f"pybuild warm: refused a client of uid {uid} (pid {pid}): not the serving user")
    return False


def _reap(workers: set[int]) -> None:
    for pid in list(workers):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            workers.discard(pid)
            continue
        if done:
            workers.discard(pid)
            log(f"pybuild warm: worker {pid} ended ({os.waitstatus_to_exitcode(status)})")


def _fork_worker(conn: socket.socket, listener: socket.socket) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        listener.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = _work(conn)
    finally:
        os._exit(code)


def _work(conn: socket.socket) -> int:
    """In the forked worker: take over the client's process state, run its command."""
    try:
        request, fds = receive_request(conn)
    except (OSError, ValueError):
        return 1
    if len(fds) == 4:
        os.fchdir(fds[3])  # relative paths in the arguments are the client's
    reason = _refusal(request, fds)
    if reason is not None:
        for fd in fds:
            os.close(fd)
        send_line(conn, f"no {reason}")
        return 0
    argv = [str(word) for word in request["argv"]]  # type: ignore[attr-defined]
    command = command_of(argv)
    log(f"pybuild warm: worker {os.getpid()} runs {command}: pybuild {' '.join(shown(argv))}")
    _become_client(request, fds)
    send_line(conn, "ok")
    relay = None
    try:
        relay = _SignalRelay(conn)  # a Ctrl-C sent before the command began lands here
        code = _run_main(argv)
    except KeyboardInterrupt:
        code = 130
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    if relay is not None:
        relay.close()
    send_line(conn, f"exit {code}")
    return code


def shown(argv: list[str]) -> list[str]:
    """``argv`` for the log: a build argument's value is left out (``K=...``), as it may
    carry a token (``pybuild serve`` leaves build args' values out of its log too)."""
    out: list[str] = []
    for word in argv:
        if out and out[-1] == "--build-arg" and "=" in word:
            word = word.split("=", 1)[0] + "=..."
        elif word.startswith("--build-arg=") and word.count("=") > 1:
            word = "=".join(word.split("=", 2)[:2]) + "=..."
        out.append(word)
    return out


def _refusal(request: dict[str, object], fds: list[int]) -> str | None:
    if len(fds) != 4:
        return "the request did not carry the streams and directory"
    if request.get("package") != str(Path(__file__).resolve().parents[1]):
        return "another pybuild install"
    mine = mount_namespace()
    if mine is None or request.get("mount_namespace") != mine:
        return "another mount namespace"  # its paths may name other files here
    argv = request.get("argv")
    if not isinstance(argv, list):
        return "no arguments"
    command = command_of([str(word) for word in argv])
    if command is None:
        return "a mistyped command"  # the command itself reports it
    if command not in SERVED:
        return "not a command the warm builder runs"
    return None


def _become_client(request: dict[str, object], fds: list[int]) -> None:
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    env = request.get("env")
    os.environ.clear()
    if isinstance(env, dict):
        os.environ.update({str(k): str(v) for k, v in env.items()})
    umask = request.get("umask")
    if isinstance(umask, int):
        os.umask(umask)
    streams = request.get("streams")
    encodings = streams if isinstance(streams, list) and len(streams) == 3 else [[None, None]] * 3
    sys.stdin = _stream(0, "r", encodings[0], line_buffering=False)
    sys.stdout = _stream(1, "w", encodings[1], line_buffering=os.isatty(1))
    sys.stderr = _stream(2, "w", encodings[2], line_buffering=True)
    sys.argv = ["pybuild", *[str(w) for w in request.get("argv", [])]]  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _stream(fd: int, mode: str, encoding: object, *, line_buffering: bool) -> io.TextIOWrapper:
    enc, errors = encoding if isinstance(encoding, list) and len(encoding) == 2 else (None, None)
    raw = io.FileIO(fd, mode, closefd=False)
    buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(
        buffered,
        encoding=enc if isinstance(enc, str) else None,
        errors=errors if isinstance(errors, str) else None,
        line_buffering=line_buffering,
    )


class _SignalRelay:
    """Delivers the signals the client forwards to this process; a client gone mid-build
    (killed, or its terminal closed) cancels the build as SIGTERM would.

    Driven by SIGIO (the socket is set O_ASYNC), not by a thread: the build forks its
    sandbox server while it runs a single thread (``runtime.forkearly``)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""
        self.open = True
        signal.signal(signal.SIGIO, self._readable)
        conn.setblocking(False)
        fd = conn.fileno()
        fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
        self._readable(signal.SIGIO, None)  # anything sent before O_ASYNC was set

    def _readable(self, signum: int, frame: FrameType | None) -> None:
        while self.open:
            try:
                chunk = self.conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                os.kill(os.getpid(), signal.SIGTERM)
                return
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                word, _, value = line.decode(errors="replace").partition(" ")
                if word == "sig" and value.isdigit():
                    os.kill(os.getpid(), int(value))

    def close(self) -> None:
        """Stop relaying (the command has ended); the socket blocks again."""
        self.open = False
        fd = self.conn.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_ASYNC)
        signal.signal(signal.SIGIO, signal.SIG_IGN)
        self.conn.setblocking(True)


def _run_main(argv: list[str]) -> int:
    from builder.cli.main import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse's usage errors and --help
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except KeyboardInterrupt:
        return 130
