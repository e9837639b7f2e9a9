"""The store's GC lock: builds share it, prune and repair take it alone (``cache.gc``).

Apart from ``cache.gc`` so that a build, which only holds the lock, does not import the
collector.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cache.errors import StoreLocked

_POLL = 0.1


@contextmanager
def build_guard(root: Path) -> Iterator[None]:
    """Held (shared) by a build, pull, load or run for its whole run; many hold it at once."""
    with _gc_lock(root, fcntl.LOCK_SH, timeout=None):
        yield


@contextmanager
def exclusive_guard(root: Path, *, timeout: float | None = 60.0) -> Iterator[None]:
    """Held by prune and repair: waits until no build runs (StoreLocked after timeout)."""
    with _gc_lock(root, fcntl.LOCK_EX, timeout=timeout):
        yield


@contextmanager
def _gc_lock(root: Path, mode: int, *, timeout: float | None) -> Iterator[None]:
    path = root / "locks" / "gc"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise StoreLocked(
                        "a build, pull, load or container (`pybuild run`) is using this store",
                        hint="wait for it to finish, then retry",
                    ) from None
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)  # releases the flock
