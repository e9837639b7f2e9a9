"""The ``pybuild`` command's first move: hand it to the store's warm builder, if one runs.

``pybuild warm`` (``builder.cli.warm_server``) keeps the builder imported; a build it
takes runs in a fork of it, with this process's arguments, environment, umask, working
directory and standard streams, so its output, files and exit code are the ones the
command would have had on its own, without the interpreter start-up and imports.
Anything else (no server, a command it does not run, ``PYBUILD_NO_WARM=1``, a server running other
code) returns None, and the command runs here as always.

This module imports only the standard library's socket and signal support: it runs
before the builder is imported, and a command that does not use the server must not pay
for it beyond one failed ``connect``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from builder.cli.warm_wire import (
    LineReader,
    mount_namespace,
    send_line,
    send_request,
    socket_path,
)
from builder.images.root import default_root

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_SERVER_GONE = 1


def store_root(argv: Sequence[str]) -> Path:
    """The store the command works on: its leading ``--root`` (the last one), else the
    default (``$PYBUILD_ROOT``...), as ``builder.cli.main`` reads them."""
    root: str | None = None
    i = 0
    while i + 1 < len(argv) and argv[i] == "--root":
        root, i = argv[i + 1], i + 2
    return Path(root) if root is not None else default_root()


def try_warm(argv: Sequence[str]) -> int | None:
    """The command's exit code when the warm builder ran it, else None (run it here)."""
    if os.environ.get("PYBUILD_NO_WARM") == "1":
        return None
    path = socket_path(store_root(argv))
    if not os.path.exists(path):
        return None
    try:
        fds = [0, 1, 2]
        for fd in fds:
            os.fstat(fd)  # a closed stream: run here, where Python handles it
    except OSError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:  # a socket left by a server that is gone, or not ours to open
        sock.close()
        return None
    with sock:
        return _ask(sock, argv, fds)


def _ask(sock: socket.socket, argv: Sequence[str], fds: list[int]) -> int | None:
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    umask = os.umask(0)
    os.umask(umask)
    request = {
        "argv": list(argv),
        "env": dict(os.environ),
        "umask": umask,
        "package": str(Path(__file__).resolve().parents[1]),
        "mount_namespace": mount_namespace(),
        "streams": [
            [getattr(s, "encoding", None), getattr(s, "errors", None)]
            for s in (sys.stdin, sys.stdout, sys.stderr)
        ],
    }
    # Forwarding starts before the request goes: a Ctrl-C from now on is the build's. If
    # the server then says no, it is delivered here again, where the command runs.
    received: list[int] = []
    previous = {sig: signal.signal(sig, _forward(sock, received)) for sig in FORWARDED_SIGNALS}
    try:
        try:
            send_request(sock, request, [*fds, cwd])
        finally:
            os.close(cwd)
        reader = LineReader(sock)
        if reader.next() == "ok":  # else "no REASON", or the server went away
            while (line := reader.next()) is not None:
                word, _, value = line.partition(" ")
                if word == "exit" and value.lstrip("-").isdigit():
                    return int(value)
            return _server_gone()
    except OSError:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for signum in received:  # not run there: this process gets them, as it would have
        os.kill(os.getpid(), signum)
    return None


def _forward(sock: socket.socket, received: list[int]) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        # OSError: the build has ended or the server is gone; the reply says which
        with contextlib.suppress(OSError):
            send_line(sock, f"sig {signum}")

    return handler


def _server_gone() -> int:
    from builder.cli.progress import print_error

    print_error(
        "the warm builder stopped before the build ended",
        "its log (where `pybuild warm` runs) may say why; run the build again, or with "
        "PYBUILD_NO_WARM=1 to build without it",
    )
    return EXIT_SERVER_GONE
