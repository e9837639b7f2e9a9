"""A container's output: ``attach`` (the hijacked stream ``docker run`` reads, and
compose's log view) and ``logs``, both in the multiplexed frame format (no tty).

The output is what the container's monitor keeps as frames
(``<store>/containers/<id>/frames``, ``builder.run.logpump``: stdout and stderr told
apart), followed until the container exits; only the streams the client asked for are
sent.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from builder.engine.errors import bad_request
from builder.engine.state import Container, Engine, lookup
from builder.engine.wire import CHUNK, STDERR, STDOUT, Reply, Request, frame
from builder.run.containers import containers_dir
from builder.run.logpump import FRAMES

_POLL = 0.05
_HEADER = struct.Struct(">BxxxL")
RAW_STREAM = "application/vnd.docker.raw-stream"
Send = Callable[[int, bytes], None]


class _Frames:
    """Whole frames from a frames file that may still grow."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.pending = b""

    def read(self) -> tuple[list[tuple[int, bytes]], bool]:
        """The frames complete so far, and whether the file gave anything."""
        data = self.file.read(CHUNK)
        self.pending += data
        out = []
        while len(self.pending) >= _HEADER.size:
            stream, size = _HEADER.unpack(self.pending[: _HEADER.size])
            end = _HEADER.size + size
            if len(self.pending) < end:
                break
            out.append((stream, self.pending[_HEADER.size : end]))
            self.pending = self.pending[end:]
        return out, bool(data)


def _streams(request: Request) -> set[int]:
    wanted = set()
    if request.flag("stdout"):
        wanted.add(STDOUT)
    if request.flag("stderr"):
        wanted.add(STDERR)
    return wanted


def _frames_path(engine: Engine, container: Container) -> Path | None:
    if not container.record_id:
        return None
    return containers_dir(engine.root) / container.record_id / FRAMES


def _finished(container: Container) -> bool:
    return container.status in ("exited", "removed")


def _open_frames(
    engine: Engine, container: Container, request: Request, stale: str = ""
) -> IO[bytes] | None:
    """The container's frames once it has them (not those of run ``stale``: it waits
    for the next run); None when it ended without any, or the client left first."""
    while True:
        path = _frames_path(engine, container)
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
    frames: _Frames, container: Container, request: Request, send: Send, engine: Engine
) -> None:
    """Send the frames as they come until the container exits (and the rest after)."""
    while True:
        got, more = frames.read()
        for stream, data in got:
            send(stream, data)
        if more:
            continue
        if _finished(container):
            while True:
                got, more = frames.read()
                for stream, data in got:
                    send(stream, data)
                if not more:
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
        wanted = _streams(request)
        if not wanted:
            return
        file = _open_frames(engine, container, request, stale if request.flag("stream") else "")
        if file is None:
            return

        def send(stream: int, data: bytes) -> None:
            if stream in wanted:
                reply.wfile.write(frame(stream, data))
                reply.wfile.flush()

        with file:
            if was_running and not request.flag("logs"):
                file.seek(0, os.SEEK_END)
            frames = _Frames(file)
            if request.flag("stream"):
                _follow(frames, container, request, send, engine)
            else:
                for stream, data in frames.read()[0]:
                    send(stream, data)
    finally:
        with container.changed:
            container.attachers -= 1
            container.changed.notify_all()


def logs(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    container = lookup(engine, params["id"])
    wanted = _streams(request)
    if not wanted:
        raise bad_request("You must choose at least one stream")
    path = _frames_path(engine, container)
    reply.stream(RAW_STREAM)
    if path is None or not path.exists():
        reply.end()
        return

    def send(stream: int, data: bytes) -> None:
        if stream in wanted:
            reply.chunk(frame(stream, data))

    with path.open("rb") as file:
        frames = _Frames(file)
        everything: list[tuple[int, bytes]] = []
        while True:
            got, more = frames.read()
            everything += got
            if not more:
                break
        for stream, data in _tail(everything, request.arg("tail") or "all"):
            send(stream, data)
        if request.flag("follow"):
            _follow(frames, container, request, send, engine)
    reply.end()


def _tail(frames: list[tuple[int, bytes]], tail: str) -> list[tuple[int, bytes]]:
    """The last ``tail`` lines (``all``: every frame as it is)."""
    if tail == "all" or not tail.isdigit():
        return frames
    lines = [(s, line) for s, data in frames for line in data.splitlines(keepends=True)]
    return lines[-int(tail) :] if int(tail) else []
