"""The unix socket and its HTTP server: one thread per connection, one log line per
request, every error in docker's shape.

The socket is made private before it listens: mode 0600 and the serving user's
(``group``: 0660 and that group's too, as dockerd's ``root:docker``). Whoever can
connect can build and run containers as the serving user, which for root is root on
the host.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import socket
import socketserver
import stat
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from builder.engine import children, containers, routes
from builder.engine.errors import ApiError
from builder.engine.logline import shown_path
from builder.engine.state import Engine
from builder.engine.wire import Reply, Request
from builder.errors import UsageError


def default_socket() -> Path:
    """``/run/pybuild.sock`` as root, ``$XDG_RUNTIME_DIR/pybuild.sock`` otherwise."""
    if os.geteuid() == 0:
        return Path("/run/pybuild.sock")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime_dir:
        raise UsageError(
            "XDG_RUNTIME_DIR is not set, so there is no default socket for a rootless server",
            hint="pass -H unix:///path/to/pybuild.sock",
        )
    return Path(runtime_dir) / "pybuild.sock"


def parse_host(value: str) -> Path:
    """``-H unix:///path`` (or a bare path) to the socket path."""
    path = value.removeprefix("unix://")
    if "://" in path or not path:
        raise UsageError(
            f"-H {value}: only unix sockets are served",
            hint="pass -H unix:///path/to/pybuild.sock",
        )
    return Path(path)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False
    engine: Engine

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that drops its idle connection is no error; anything else is logged."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            return
        self.engine.log("".join(traceback.format_exception(exc)).rstrip() if exc else "error")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        return None  # one line per request is written by _dispatch

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        engine = self.server.engine
        started = time.monotonic()
        url = urlsplit(self.path)
        reply = Reply(self.wfile, head_only=self.command == "HEAD")
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request.make(
            self.command, unquote(url.path), url.query, headers, self.rfile, self.connection
        )
        try:
            request.path = routes.strip_version(request.path)
            endpoint, params = routes.find(self.command, request.path)
            endpoint(engine, request, reply, params)
        except ApiError as exc:
            self._fail(reply, exc.status, exc.message)
        except (BrokenPipeError, ConnectionResetError, children.ClientGone):
            self.close_connection = True  # the client left; its command is cancelled
            reply.status = 499
        except Exception as exc:  # a bug in pybuild: the client still gets an answer
            engine.log("".join(traceback.format_exception(exc)).rstrip())
            self._fail(reply, 500, f"internal error in pybuild: {type(exc).__name__}: {exc}")
        if reply.hijacked or not request._done:
            self.close_connection = True
        elapsed = time.monotonic() - started
        engine.log(f"{self.command} {shown_path(self.path)} {reply.status} {elapsed:.3f}s")

    def _fail(self, reply: Reply, status: int, message: str) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            if reply.streaming:  # the head is sent: the error goes in the stream
                reply.line({"errorDetail": {"message": message}, "error": message})
                reply.end()
            elif reply.status == 0:
                reply.error(status, message)
        reply.status = reply.status or status


def bind(path: Path, group: str | None, busy: UsageError | None = None) -> socket.socket:
    """A listening socket at ``path``, 0600 (0660 with ``group``) before it listens. A
    stale socket (nobody listening) is replaced; anything else there is refused, a live
    server with ``busy`` when given."""
    _clear_stale(path, busy)
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            sock.close()
            path.unlink()
            raise UsageError(f"--group {group}: no such group") from None
        os.chown(path, -1, gid)
        os.chmod(path, 0o660)
    sock.listen(64)
    return sock


def _clear_stale(path: Path, busy: UsageError | None) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise UsageError(
            f"{path} exists and is not a socket", hint="remove it or pass another -H path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        path.unlink()  # nobody listens: a server that died left it
        return
    finally:
        probe.close()
    raise busy or UsageError(
        f"{path}: another server is listening there",
        hint="stop it, or pass another -H unix:///path",
    )


def serve(engine: Engine, path: Path, group: str | None = None) -> None:
    """Serve the API at ``path`` until interrupted; the socket is removed at the end."""
    sock = bind(path, group)
    containers.restore(engine)
    server = _Server(str(path), _Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.engine = engine
    engine.log(f"pybuild serve: listening on unix://{path} (store {engine.root})")
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        engine.stopping.set()
        children.cancel_all(engine)
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
