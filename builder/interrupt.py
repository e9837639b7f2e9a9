"""Ctrl-C (SIGINT) and SIGTERM during a build: stop it within seconds, store intact.

Steps run in worker threads and RUN steps in sandboxes; a signal reaches only the main
thread. While :func:`cancel_on_signals` is active a signal sets ``stop`` (the solver
starts no further step), cancels the sandboxes (their containers are killed) and raises
:class:`BuildInterrupted` in the main thread, whose unwinding waits for the workers to
finish their clean-up (temp dirs removed; a layer is committed whole or not at all).
Like Go's ``signal.Notify`` (docker, buildx), the handlers replace an inherited SIG_IGN.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from builder.errors import BuildInterrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Cancellable(Protocol):
    """What the handler stops (``runtime.sandboxes.Sandboxes``)."""

    def cancel(self) -> None: ...


@contextmanager
def cancel_on_signals(sandboxes: Cancellable, stop: threading.Event) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM cancel the build (main thread only; elsewhere
    signal handlers cannot be installed and the block runs unguarded). A second signal
    SIGKILLs the sandboxes at once instead of giving their inits time to clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        stop.set()
        sandboxes.cancel()
        raise BuildInterrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
