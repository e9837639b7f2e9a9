"""What the warm builder's client and server say to each other over the store's socket.

The client connects to ``<root>/warm.sock`` and sends one request: a 4-byte length and a
JSON object (argv, environment, umask, the stream encodings and which package it runs),
with its stdin, stdout, stderr and working directory attached as file descriptors
(SCM_RIGHTS). The server answers with lines: ``ok`` (this command runs here), ``no
REASON`` (run it without the server) and, once the command ends, ``exit CODE``. While it
runs, the client sends ``sig N`` for each SIGINT, SIGTERM or SIGHUP it receives.

Only ``os``, ``socket``, ``json`` and ``struct``: the client imports this before (and
instead of) the builder.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

SOCKET_NAME = "warm.sock"
FDS = 4  # stdin, stdout, stderr, the working directory
_LENGTH = struct.Struct("!I")
MAX_REQUEST = 16 << 20


def socket_path(root: Path) -> Path:
    """The warm builder's socket for the store at ``root``."""
    return root / SOCKET_NAME


def mount_namespace() -> int | None:
    """This process's mount namespace (its inode): the paths a command names are
    resolved in it, so only a server in the same one may run the command."""
    try:
        return os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        return None


def send_request(sock: socket.socket, request: dict[str, object], fds: list[int]) -> None:
    """``request`` as length-prefixed JSON, ``fds`` riding on its first bytes."""
    body = json.dumps(request).encode()
    data = _LENGTH.pack(len(body)) + body
    sent = socket.send_fds(sock, [data], fds)
    if sent < len(data):
        sock.sendall(data[sent:])


def receive_request(sock: socket.socket) -> tuple[dict[str, object], list[int]]:
    """The request and its file descriptors; ValueError when it is not one."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, FDS)
    if len(data) < _LENGTH.size:
        raise ValueError("short request")
    (length,) = _LENGTH.unpack_from(data)
    if length > MAX_REQUEST:
        raise ValueError("request too large")
    body = bytearray(data[_LENGTH.size :])
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            raise ValueError("truncated request")
        body += chunk
    request = json.loads(bytes(body))
    if not isinstance(request, dict):
        raise ValueError("request is not an object")
    return request, list(fds)


def send_line(sock: socket.socket, line: str) -> None:
    sock.sendall(line.encode() + b"\n")


class LineReader:
    """Lines from a socket, one at a time; ``None`` once the peer has closed it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> str | None:
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(4096)
            except InterruptedError:  # pragma: no cover - PEP 475 retries recv itself
                continue
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace")
