"""A container's output: ``attach`` (the hijacked stream ``docker run`` reads, and
compose's log view) and ``logs``, both in the multiplexed frame format (no tty).

The output is the log the container's monitor writes (``<store>/containers/<id>/log``),
followed until the container exits. The monitor writes stdout and stderr to that one
file, so both arrive as stdout frames.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO

from builder.engine.errors import bad_request
from builder.engine.state import Container, Engine, lookup
from builder.engine.wire import CHUNK, STDOUT, Reply, Request, frame
from builder.run.containers import containers_dir

_POLL = 0.05
RAW_STREAM = "application/vnd.docker.raw-stream"


def _wants_output(request: Request) -> bool:
    return request.flag("stdout") or request.flag("stderr")


def _log_path(engine: Engine, container: Container) -> Path | None:
    if not container.record_id:
        return None
    return containers_dir(engine.root) / container.record_id / "log"


def _finished(container: Container) -> bool:
    return container.status in ("exited", "removed")


def _open_log(
    engine: Engine, container: Container, request: Request, stale: str = ""
) -> IO[bytes] | None:
    """The container's log once it has one (not the log of run ``stale``: it waits for
    the next run); None when it ended without one, or the client left first."""
    while True:
        path = _log_path(engine, container)
        if container.record_id == stale and stale:
            if container.status == "removed" or request.client_gone() or engine.stopping.is_set():
                return None
            time.sleep(_POLL)
            continue
        if path is not None:
            try:
                return path.open("rb")
            except FileNotFoundError:
                pass
        if _finished(container) and (path is None or not path.exists()):
            return None
        if request.client_gone() or engine.stopping.is_set():
            return None
        time.sleep(_POLL)


def _follow(
    log: IO[bytes], container: Container, request: Request, send: object, engine: Engine
) -> None:
    """Send what the log gets until the container exits (and the rest after it)."""
    assert callable(send)
    while True:
        data = log.read(CHUNK)
        if data:
            send(data)
            continue
        if _finished(container):
            while data := log.read(CHUNK):
                send(data)
            return
        if request.client_gone() or engine.stopping.is_set():
            return
        time.sleep(_POLL)


def attach(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    container = lookup(engine, params["id"])
    with container.changed:
        container.attachers += 1
        was_running = container.status == "running"
        # a stream to a stopped container follows its next run (`docker start -a`)
        stale = container.record_id if container.status == "exited" else ""
    try:
        upgrade = "upgrade" in request.headers.get("connection", "").lower()
        reply.hijack(upgrade)
        request.hijacked = True
        if not _wants_output(request):
            return
        log = _open_log(engine, container, request, stale if request.flag("stream") else "")
        if log is None:
            return

        def send(data: bytes) -> None:
            reply.wfile.write(frame(STDOUT, data))
            reply.wfile.flush()

        with log:
            if was_running and not request.flag("logs"):
                log.seek(0, os.SEEK_END)
            if request.flag("stream"):
                _follow(log, container, request, send, engine)
            else:
                while data := log.read(CHUNK):
                    send(data)
    finally:
        with container.changed:
            container.attachers -= 1
            container.changed.notify_all()


def logs(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    container = lookup(engine, params["id"])
    if not _wants_output(request):
        raise bad_request("You must choose at least one stream")
    path = _log_path(engine, container)
    reply.stream(RAW_STREAM)
    if path is None or not path.exists():
        reply.end()
        return
    with path.open("rb") as log:
        head = _tail(log.read(), request.arg("tail") or "all")
        if head:
            reply.chunk(frame(STDOUT, head))
        if request.flag("follow"):
            _follow(log, container, request, lambda d: reply.chunk(frame(STDOUT, d)), engine)
    reply.end()


def _tail(data: bytes, tail: str) -> bytes:
    if tail == "all" or not tail.isdigit():
        return data
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-int(tail) :]) if int(tail) else b""
