"""Trees deeper than the recursion limit and PATH_MAX never break the store."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fstree.tree import remove_tree
from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

DEEP_RUN = "RUN i=0; while [ $i -lt 2500 ]; do mkdir d && cd d; i=$((i+1)); done\n"
PATH_MAX = 4096


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """pytest's own clean-up of old temp dirs (shutil.rmtree) dies on deep trees."""
    yield
    remove_tree(tmp_path, ignore_errors=True)


def _leftovers(pybuild: Pybuild) -> list[str]:
    return sorted(os.listdir(pybuild.root / "tmp"))


def _make_deep(top: Path, depth: int, name: str) -> None:
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


@pytest.mark.parametrize("snapshotter", ["overlay", "copy"])
def test_a_run_making_a_too_deep_tree_fails_cleanly_and_the_store_keeps_working(
    pybuild: Pybuild, tmp_path: Path, snapshotter: str
) -> None:
    env = {"PYBUILD_SNAPSHOTTER": snapshotter}
    deep = write_context(tmp_path / "deep", {}, "FROM busybox\n" + DEEP_RUN)
    failed = pybuild("build", "--progress", "plain", deep, ok=False, env=env)
    assert failed.code != 0
    assert "Traceback" not in failed.err
    assert f"{deep / 'Dockerfile'}:2:" in failed.err  # the step's Dockerfile line
    assert "longer than the kernel allows" in failed.err
    assert len(failed.err) < 100_000  # the too-long path is shortened, not printed whole
    assert not [n for n in _leftovers(pybuild) if n.startswith("step-")]

    ok = write_context(tmp_path / "ok", {}, "FROM busybox\nRUN echo fine > /fine\n")
    pybuild("build", "--progress", "plain", "-t", "fine:1", ok, env=env)
    verify = pybuild("cache", "verify")
    assert "clean" in verify.out and "PROBLEM" not in verify.out


def test_a_deep_temp_dir_left_behind_is_reported_repaired_and_swept(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    def leave_deep_step_dir(name: str) -> Path:
        left = pybuild.root / "tmp" / name
        _make_deep(left, 60, "n" * 100)  # 6,000 bytes of path below it: over PATH_MAX
        old = time.time() - 60
        os.utime(left, (old, old))  # its owner died a minute ago
        return left

    left = leave_deep_step_dir("step-0123456789abcdef0123456789abcdef")
    before = pybuild("cache", "verify", ok=False)
    assert before.code == 1
    assert f"PROBLEM: stale-tmp {left}" in before.out
    repaired = pybuild("cache", "verify", "--repair")
    assert f"repaired: removed temp entry {left}" in repaired.out
    assert not os.path.lexists(left)
    assert "clean" in pybuild("cache", "verify").out

    left = leave_deep_step_dir("step-fedcba9876543210fedcba9876543210")
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN echo ok > /ok\n")
    pybuild.build(ctx)
    assert not os.path.lexists(left)  # swept at the build's start
    assert "clean" in pybuild("cache", "verify").out


@pytest.fixture
def small_store(tmp_path: Path, base_archive: Path) -> Iterator[Pybuild]:
    """A store on a 12 MiB tmpfs with busybox loaded (about 4 MiB)."""
    root = tmp_path / "small"
    root.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", root]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        cli = Pybuild(root)
        cli("load", "-i", base_archive)
        yield cli
    finally:
        subprocess.run(["umount", "-l", root], check=False)


def test_a_full_disk_says_the_disk_is_full_and_what_to_do(
    small_store: Pybuild, tmp_path: Path
) -> None:
    # 6 MB of noise: the RUN fits, its compressed layer blob does not.
    ctx = write_context(
        tmp_path / "ctx", {}, "FROM busybox\nRUN head -c 6000000 /dev/urandom > /noise\n"
    )
    failed = small_store("build", "--progress", "plain", ctx, ok=False)
    assert failed.code != 0
    assert "Traceback" not in failed.err
    assert "no space left" in failed.err.lower()
    assert f"{ctx / 'Dockerfile'}:2:" in failed.err
    assert "is full" in failed.err and "pybuild cache prune" in failed.err
    assert "holding the store busy" not in failed.err
    assert "changed while it was read" not in failed.err
    assert not [n for n in _leftovers(small_store) if n.startswith(("step-", "blob-"))]
