"""Which overlay roots skip syncing the upper filesystem (overlayfs ``volatile``).

A build step's upper dir becomes a layer whose blob pybuild fsyncs, so its root may
skip every sync (and the whole-filesystem one at unmount); a container's upper is its
data, so ``pybuild run`` never mounts it volatile.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.rootfs import _kernel_at_least, use_copy_snapshotter
from tests.integration.clihelp import Pybuild, write_context

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(
        use_copy_snapshotter() or not _kernel_at_least(5, 10),
        reason="needs overlay roots on Linux 5.10+ (volatile)",
    ),
]

ROOT_OPTIONS = """awk '$5 == "/" { print $NF }' /proc/self/mountinfo"""


def test_a_build_steps_root_is_volatile_and_a_run_containers_is_not(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    dockerfile = f"FROM busybox\nRUN {ROOT_OPTIONS} > /step-root-options\n"
    pybuild.build(write_context(tmp_path / "ctx", {}, dockerfile), "-t", "vol:1")
    step = pybuild("run", "--rm", "vol:1", "cat", "/step-root-options").out
    running = pybuild("run", "--rm", "vol:1", "sh", "-c", ROOT_OPTIONS).out
    assert _volatile(step), step
    assert "upperdir=" in running and not _volatile(running), running


def _volatile(options: str) -> bool:
    """Whether mount options say volatile (Linux 6.x shows it as ``fsync=volatile``)."""
    return bool({"volatile", "fsync=volatile"} & set(options.strip().split(",")))
