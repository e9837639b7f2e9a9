"""Emulators registered with binfmt_misc, paused while BuildKit through dockerd 20.10 runs.

dockerd 20.10's BuildKit (v0.8) asks for the worker's platforms with the cache off at
every build's frontend start (``WorkerInfos`` -> ``Platforms(true)``), so it runs one
test binary per foreign architecture it knows (arm64, riscv64, ppc64le, s390x, 386,
arm): with qemu-user-static registered (``scripts/install`` registers it for
multi-platform builds) each goes through qemu, ~35 ms each, ~0.38 s per build measured
here. Current BuildKit asks with the cache on (``Platforms(false)``) and probes once
per daemon. The benchmark measures the peer as current BuildKit behaves, so it turns
binfmt_misc off (``status`` 0: emulators stay registered, the kernel just does not use
them) for the run and back on at the end; ``--keep-emulators`` leaves it alone.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

STATUS = Path("/proc/sys/fs/binfmt_misc/status")


def enabled(status: Path = STATUS) -> bool:
    """Whether binfmt_misc is mounted and on."""
    try:
        return status.read_text().strip() == "enabled"
    except OSError:
        return False


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def paused(status: Path = STATUS) -> Iterator[bool]:
    """binfmt_misc off inside the block (True) when it was on, restored on the way out,
    also when the run is interrupted or terminated; False when there was nothing to do."""
    if not enabled(status):
        yield False
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    status.write_text("0")
    try:
        yield True
    finally:
        status.write_text("1")
        signal.signal(signal.SIGTERM, previous)
