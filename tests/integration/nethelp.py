"""Host-side helpers for the default-network tests: listeners a container must not reach,
marker traffic it must not see, and probes (Python scripts) run inside a build."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.integration.clihelp import Result, write_context

# A busybox shell command getting http://{host}:8000/ (format it with host=...): busybox
# wget segfaults here on every fetch (even by address, even with --network host), so the
# client speaks HTTP through nc.
NC_GET = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 {host} 8000'

# Run inside the Debian image: connect to the host listener's port on the container's
# loopback and on its default gateway (pasta's --no-map-gw: not the host), print per target.
LOOPBACK_PROBE = """\
import socket, sys
port = int(sys.argv[1])
targets = ["127.0.0.1"]
for line in open("/proc/net/route").read().splitlines()[1:]:
    fields = line.split()
    if fields[1] == "00000000":
        targets.append(socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little")))
for target in targets:
    try:
        socket.create_connection((target, port), timeout=1).close()
        print("PROBE", target, "CONNECTED")
    except OSError as exc:
        print("PROBE", target, "FAILED", exc)
"""

ABSTRACT_PROBE = """\
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\\0" + sys.argv[1])
    print("PROBE CONNECTED")
except OSError as exc:
    print("PROBE FAILED", exc)
"""

# Capture every frame on every interface for ~1.5 s; report whether the marker passed.
PACKET_PROBE = """\
import socket, sys, time
marker = sys.argv[1].encode()
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
s.settimeout(0.1)
end = time.monotonic() + 1.5
frames, seen = 0, False
while time.monotonic() < end:
    try:
        data = s.recv(65536)
    except TimeoutError:
        continue
    frames += 1
    seen = seen or marker in data
print("PROBE frames", frames, "MARKER-SEEN" if seen else "MARKER-ABSENT")
"""


# build(context, *flags): runs `pybuild build --progress plain *flags context` (as root or
# as a rootless user) and returns its Result.
Build = Callable[..., Result]


def probe(build: Build, ctx: Path, script: str, args: str, host: bool) -> list[str]:
    """Build a RUN of ``script args`` in the Debian image (``--network=host`` with the
    entitlement when ``host``); return its PROBE lines."""
    flag = "--network=host " if host else ""
    dockerfile = (
        f"FROM debian-py:bookworm\nCOPY probe.py /probe.py\nRUN {flag}python3 /probe.py {args}\n"
    )
    write_context(ctx, {"probe.py": script}, dockerfile)
    extra = ("--allow", "network.host") if host else ()
    done = build(ctx, "--no-cache", *extra)
    lines = probe_lines(done.out + done.err)
    assert lines, done.err
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Listener:
    """A TCP (or abstract unix) listener that counts the connections it accepts."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.accepted = 0
        sock.listen(8)
        sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        """Stop serving, then count what is still waiting to be accepted."""
        self._stop.set()
        self._thread.join()
        self.sock.setblocking(False)
        with contextlib.suppress(OSError):
            while True:
                self.sock.accept()[0].close()
                self.accepted += 1
        self.sock.close()


@contextlib.contextmanager
def loopback_listener() -> Iterator[tuple[int, Listener]]:
    """A listener on the host's 127.0.0.1 only, on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    listener = Listener(sock)
    try:
        yield sock.getsockname()[1], listener
    finally:
        listener.close()


@contextlib.contextmanager
def abstract_listener() -> Iterator[tuple[str, Listener]]:
    """A listener on a fresh abstract unix socket name (in the host's network namespace)."""
    name = f"pybuild-test-{uuid.uuid4().hex[:12]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    listener = Listener(sock)
    try:
        yield name, listener
    finally:
        listener.close()


@contextlib.contextmanager
def marker_traffic(marker: str) -> Iterator[None]:
    """UDP datagrams carrying ``marker`` on the host's loopback every 20 ms until exit."""
    stop = threading.Event()
    target = ("127.0.0.1", free_port())

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not stop.wait(0.02):
                s.sendto(marker.encode(), target)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def http_get(port: int, path: str = "/", wait: float = 15.0) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path, retrying until the service answers or ``wait`` ends."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def probe_lines(output: str) -> list[str]:
    """The probe's result lines from a build's plain progress (``#3 0.123 PROBE ...``)."""
    return [line[line.index("PROBE") :] for line in output.splitlines() if "PROBE " in line]
