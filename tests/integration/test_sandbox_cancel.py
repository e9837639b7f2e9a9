"""``runtime.sandboxes.Sandboxes``: what a build's signal handler uses to stop its RUNs."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from runtime.errors import SandboxCancelled
from runtime.rootfs import overlay_supported
from runtime.sandboxes import Sandboxes
from runtime.spec import ContainerSpec, RunResult
from tests.integration.busybox_rootfs import fresh_rootfs, make_busybox_rootfs

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts"),
    pytest.mark.skipif(not overlay_supported(), reason="kernel has no overlayfs"),
]


@pytest.fixture(scope="module")
def lower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox"))


def _sleeper(lower: Path, tmp: Path, seconds: int) -> ContainerSpec:
    return ContainerSpec(
        rootfs=fresh_rootfs(tmp, (lower,)),
        args=("sleep", str(seconds)),
        env=("PATH=/bin",),
        scratch=tmp,  # a killed init leaves its temp dir here, not in /tmp
    )


def _running(marker: bytes) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip() == marker:
                    return True
            except OSError:
                continue
    return False


class _Runner(threading.Thread):
    """Runs one spec in a worker thread, as the solver does, and keeps what it ended with."""

    def __init__(self, boxes: Sandboxes, spec: ContainerSpec) -> None:
        super().__init__(daemon=True)
        self.boxes, self.spec = boxes, spec
        self.outcome: RunResult | BaseException | None = None

    def run(self) -> None:
        try:
            self.outcome = self.boxes.run(self.spec)
        except BaseException as exc:  # the test inspects it
            self.outcome = exc


def _gone(marker: bytes, within: float) -> bool:
    """Whether no process runs ``marker`` within ``within`` seconds: when an init is
    SIGKILLed the kernel kills the rest of its PID namespace, which on a loaded machine
    takes a moment after the init is reaped."""
    deadline = time.monotonic() + within
    while _running(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _started(boxes: Sandboxes, seconds: int) -> None:
    deadline = time.monotonic() + 20
    while not _running(f"sleep {seconds}".encode()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert boxes.live_pids() and _running(f"sleep {seconds}".encode())


def test_cancel_kills_a_running_sandbox_in_another_thread(lower: Path, tmp_path: Path) -> None:
    boxes, seconds = Sandboxes(), random.randrange(3000, 4000)
    runner = _Runner(boxes, _sleeper(lower, tmp_path, seconds))
    runner.start()
    _started(boxes, seconds)
    cancelled = time.monotonic()
    boxes.cancel()
    runner.join(10)
    assert time.monotonic() - cancelled < 3
    assert isinstance(runner.outcome, SandboxCancelled)
    assert not _running(f"sleep {seconds}".encode()) and boxes.live_pids() == []


def test_nothing_starts_after_cancel(lower: Path, tmp_path: Path) -> None:
    boxes = Sandboxes()
    boxes.cancel()
    with pytest.raises(SandboxCancelled, match="not started"):
        boxes.run(_sleeper(lower, tmp_path, 1))


def test_an_init_that_does_not_comply_is_killed_after_the_grace(
    lower: Path, tmp_path: Path
) -> None:
    boxes, seconds = Sandboxes(grace=0.5), random.randrange(4000, 5000)
    runner = _Runner(boxes, _sleeper(lower, tmp_path, seconds))
    runner.start()
    _started(boxes, seconds)
    (init,) = boxes.live_pids()
    os.kill(init, signal.SIGSTOP)  # a stopped init cannot act on the kill request
    boxes.cancel()
    runner.join(10)
    assert isinstance(runner.outcome, SandboxCancelled)
    assert _gone(f"sleep {seconds}".encode(), within=5)
