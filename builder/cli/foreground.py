"""What the foreground servers (``pybuild serve``, ``pybuild warm``) share: timestamped log
lines on stderr, and SIGTERM stopping them as Ctrl-C does."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType


def log(line: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    sys.stderr.write(f"{stamp} {line}\n")
    sys.stderr.flush()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so a server's clean-up runs for both."""
    signal.signal(signal.SIGTERM, _interrupt)
