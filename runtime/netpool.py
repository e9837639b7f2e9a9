"""The private networks of one caller (a build), reused from one RUN step to the next.

Making a namespace and starting pasta costs tens of milliseconds, a RUN step's whole
budget, so a build keeps the ones it made, as BuildKit keeps a pool of namespaces: a
step takes a free one (or makes one when every one is in use by a step running at the
same time) and gives it back when its sandbox has ended. Every process a step started
has ended by then (its PID namespace is gone), so the next step finds no listener or
connection of its predecessor. :meth:`NetworkPool.close` stops them all.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from pathlib import Path

from runtime import netns
from runtime.errors import SandboxError


class NetworkPool:
    """Private networks (:mod:`runtime.netns`) handed out one per running sandbox."""

    def __init__(self, directory: Path | None = None) -> None:
        """``directory`` holds the namespaces' files (a dir of the caller's that a later
        sweep removes if we are killed: removing a file makes its pasta quit); None: a
        new temp dir, made at the first :meth:`acquire`."""
        self._lock = threading.Lock()
        self._free: list[netns.PrivateNetwork] = []
        self._all: list[netns.PrivateNetwork] = []
        self._dir = directory
        self._own_dir = directory is None
        self._closed = False
        self._made = 0

    def acquire(self) -> netns.PrivateNetwork:
        """A network no other sandbox uses."""
        with self._lock:
            if self._closed:
                raise SandboxError("the build's networks are closed")
            if self._free:
                return self._free.pop()
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="pybuild-net-"))
            self._made += 1
            directory, name = self._dir, f"ns{self._made}"
        network = netns.create(directory, name)
        with self._lock:
            self._all.append(network)
        return network

    def release(self, network: netns.PrivateNetwork, *, reuse: bool = True) -> None:
        """Give ``network`` back; ``reuse=False`` (a privileged sandbox could have changed
        its interfaces or routes) stops it instead."""
        with self._lock:
            if reuse and not self._closed:
                self._free.append(network)
                return
            if network in self._all:
                self._all.remove(network)
        network.close()

    def close(self) -> None:
        """Stop every network; those still in use stop when released."""
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
            directory = self._dir if self._own_dir else None
        for network in free:
            network.close()
        if directory is not None:
            with contextlib.suppress(OSError):
                directory.rmdir()  # not empty while a network is still in use
