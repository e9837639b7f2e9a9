"""A detached container's output kept twice: ``log`` (stdout and stderr as they come,
what ``pybuild logs`` shows) and ``frames``, the same bytes in docker's multiplexed
stream format (8-byte header: stream 1 = stdout, 2 = stderr, then the length), so that
``pybuild serve`` can tell a client which stream each part came from.

The monitor starts the container with a pipe for each stream and pumps both here, on a
thread, until every writer has closed them.
"""

from __future__ import annotations

import os
import select
import struct
import threading
from pathlib import Path

STDOUT, STDERR = 1, 2
FRAMES = "frames"
_HEADER = struct.Struct(">BxxxL")


class LogPump:
    """Pipes for the container's stdout and stderr, pumped into ``log`` and ``frames``
    under ``home``; ``close`` waits for the pump (after the container has exited)."""

    def __init__(self, home: Path) -> None:
        self.stdout_r, self.stdout_w = os.pipe()
        self.stderr_r, self.stderr_w = os.pipe()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._log = os.open(home / "log", flags, 0o640)
        self._frames = os.open(home / FRAMES, flags, 0o640)
        self._thread = threading.Thread(target=self._pump, daemon=True)

    def start(self) -> None:
        """Begin pumping; call once the container holds the write ends (closed here)."""
        os.close(self.stdout_w)
        os.close(self.stderr_w)
        self._thread.start()

    def _pump(self) -> None:
        streams = {self.stdout_r: STDOUT, self.stderr_r: STDERR}
        while streams:
            ready, _, _ = select.select(list(streams), [], [])
            for fd in ready:
                data = os.read(fd, 65536)
                if not data:
                    os.close(fd)
                    del streams[fd]
                    continue
                os.write(self._log, data)
                os.write(self._frames, _HEADER.pack(streams[fd], len(data)) + data)

    def close(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)
        os.close(self._log)
        os.close(self._frames)
