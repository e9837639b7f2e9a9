"""HTTP on the engine socket: a request's query and body, and docker's reply shapes.

Replies are HTTP/1.1 with a length (``json``, ``empty``, ``raw``) or chunked
(``stream``: JSON lines, tar bytes, multiplexed frames), so a client can keep its
connection; ``hijack`` answers ``101 UPGRADED`` and hands over the raw socket, as the
engine does for ``attach``.
"""

from __future__ import annotations

import io
import json
import select
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from builder.engine.errors import bad_request

CHUNK = 65536
STDOUT, STDERR = 1, 2  # the multiplexed stream's frame types


@dataclass
class Request:
    """One request: method, path without the ``/v1.xx`` prefix, query, headers, body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-case
    rfile: io.BufferedIOBase
    connection: socket.socket
    _body_left: int | None = field(default=None, repr=False)
    _chunked: bool = False
    _chunk_left: int = 0
    _done: bool = False
    hijacked: bool = False  # the connection is a raw stream now (attach)

    @classmethod
    def make(
        cls,
        method: str,
        path: str,
        raw_query: str,
        headers: dict[str, str],
        rfile: io.BufferedIOBase,
        connection: socket.socket,
    ) -> Request:
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        left = int(length) if length and length.isdigit() and not chunked else None
        return cls(
            method,
            path,
            parse_qs(raw_query, keep_blank_values=True),
            headers,
            rfile,
            connection,
            _body_left=0 if left is None and not chunked else left,
            _chunked=chunked,
            _done=not chunked and not left,
        )

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean parameter as docker reads it: 1/true (docker-py sends True)."""
        value = self.arg(name)
        if not value:
            return default
        return value.lower() in ("1", "true", "yes")

    def json_arg(self, name: str) -> Any:
        value = self.arg(name)
        if not value:
            return None
        try:
            return json.loads(value)
        except ValueError as exc:
            raise bad_request(f"query parameter {name!r} is not valid JSON: {exc}") from None

    def read(self, size: int = CHUNK) -> bytes:
        """Up to ``size`` bytes of the body (b"" at its end), chunked or not."""
        if self._done:
            return b""
        if not self._chunked:
            assert self._body_left is not None
            data = self.rfile.read(min(size, self._body_left)) if self._body_left else b""
            self._body_left -= len(data)
            if not data:
                self._done = True
            return data
        if self._chunk_left == 0:
            line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                self._chunk_left = int(line, 16)
            except ValueError:
                raise bad_request("malformed chunked request body") from None
            if self._chunk_left == 0:
                while self.rfile.readline(1024).strip():  # trailers, then the blank line
                    pass
                self._done = True
                return b""
        data = self.rfile.read(min(size, self._chunk_left))
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self.rfile.readline(16)
        if not data:
            self._done = True
        return data

    def body(self, limit: int = 16 << 20) -> bytes:
        parts, total = [], 0
        while data := self.read():
            total += len(data)
            if total > limit:
                raise bad_request(f"request body over {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    def json_body(self) -> Any:
        raw = self.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"request body is not valid JSON: {exc}") from None

    def client_gone(self) -> bool:
        """True when the client closed its connection (checked without blocking). After
        a hijack a client may close only its sending side (no stdin to send): then only a
        hang-up counts."""
        try:
            poller = select.poll()
            poller.register(self.connection, select.POLLIN | select.POLLHUP | select.POLLERR)
            events = dict(poller.poll(0)).get(self.connection.fileno(), 0)
            if events & (select.POLLHUP | select.POLLERR):
                return True
            if not events & select.POLLIN or self.hijacked:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


class Reply:
    """Writes one response on ``wfile``; ``status`` is what the log line shows."""

    def __init__(self, wfile: io.BufferedIOBase, head_only: bool = False) -> None:
        self.wfile = wfile
        self.head_only = head_only
        self.status = 0
        self.streaming = False
        self.hijacked = False

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        reason = _REASONS.get(status, "OK")
        lines = [f"HTTP/1.1 {status} {reason}", "Server: pybuild", "Api-Version: 1.41"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def raw(self, status: int, body: bytes, content_type: str, **extra: str) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **extra}
        self._head(status, headers)
        if not self.head_only:
            self.wfile.write(body)
        self.wfile.flush()

    def json(self, status: int, doc: object) -> None:
        self.raw(status, json.dumps(doc).encode() + b"\n", "application/json")

    def empty(self, status: int = 204) -> None:
        self._head(status, {"Content-Length": "0"})
        self.wfile.flush()

    def error(self, status: int, message: str) -> None:
        self.json(status, {"message": message})

    def stream(self, content_type: str = "application/json", status: int = 200) -> None:
        """Start a chunked body; ``chunk`` writes to it, ``end`` ends it."""
        self._head(status, {"Content-Type": content_type, "Transfer-Encoding": "chunked"})
        self.wfile.flush()
        self.streaming = True

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def line(self, doc: object) -> None:
        self.chunk(json.dumps(doc).encode() + b"\r\n")

    def end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self.streaming = False

    def hijack(self, upgrade: bool, protocol: str = "tcp") -> None:
        """The raw stream: ``101 UPGRADED`` when the client asked to upgrade, else 200
        with no length; the connection closes at the end."""
        content_type = "application/vnd.docker.raw-stream"
        if upgrade:
            self._head(
                101, {"Content-Type": content_type, "Connection": "Upgrade", "Upgrade": protocol}
            )
        else:
            self._head(200, {"Content-Type": content_type, "Connection": "close"})
        self.wfile.flush()
        self.hijacked = True


def frame(stream: int, data: bytes) -> bytes:
    """One frame of the multiplexed stdout/stderr stream (no tty)."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def frames(stream: int, data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield frame(stream, data[start : start + CHUNK])


_REASONS = {
    101: "UPGRADED",
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    501: "Not Implemented",
}
