"""Resource limits: a memory hog is OOM-killed (137), a fork bomb is held at pids.max, the
per-container cgroup is gone afterwards and the host is left alone."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

import pytest

from runtime import cgroups
from runtime.rootfs import overlay_supported
from runtime.sandbox import start
from runtime.spec import ContainerSpec, Resources, RunResult
from tests.integration.busybox_rootfs import fresh_rootfs, make_busybox_rootfs

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and cgroups"),
    pytest.mark.skipif(not overlay_supported(), reason="kernel has no overlayfs"),
]

TIMEOUT = 30.0
MIB = 1 << 20


@pytest.fixture(scope="module")
def lower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox"))


def run_limited(lower: Path, tmp: Path, script: str, res: Resources) -> tuple[RunResult, str]:
    """Run ``sh -c script`` with ``res``; killed if it outlives :data:`TIMEOUT`."""
    tmp.mkdir(parents=True, exist_ok=True)
    spec = ContainerSpec(
        rootfs=fresh_rootfs(tmp, (lower,)),
        args=("sh", "-c", script),
        env=("PATH=/bin",),
        resources=res,
    )
    with tempfile.TemporaryFile() as out:
        box = start(spec, stdout=out.fileno(), stderr=out.fileno())
        deadline = time.monotonic() + TIMEOUT
        while box.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if box.running():
            box.kill()
            pytest.fail(f"the container outlived {TIMEOUT}s")
        result = box.wait()
        out.seek(0)
        return result, out.read().decode(errors="replace")


def leftover_cgroups() -> set[Path]:
    """Every per-container cgroup dir pybuild has under any controller."""
    return {p for p in Path(cgroups.CGROUP_ROOT).glob("**/pybuild/pybuild-*") if p.is_dir()}


def test_memory_hog_is_oom_killed_with_137(lower: Path, tmp_path: Path) -> None:
    before = leftover_cgroups()
    # Doubles a shell string 30 times (1 GiB) unless stopped; 32 MiB stops it early.
    script = "a=x; i=0; while [ $i -lt 30 ]; do a=$a$a; i=$((i+1)); done; echo survived"
    result, out = run_limited(lower, tmp_path, script, Resources(memory=32 * MIB))
    assert (result.exit_code, result.signal) == (137, 9)
    assert result.error is not None and "out of memory" in result.error
    assert "survived" not in out
    assert leftover_cgroups() == before


def test_fork_bomb_is_held_at_the_pids_limit(lower: Path, tmp_path: Path) -> None:
    before = leftover_cgroups()
    # Counted with shell builtins: at the limit a counting pipeline may itself not fork.
    script = "bomb() { bomb | bomb & }; bomb; sleep 1; set -- /proc/[0-9]*; echo $#"
    result, out = run_limited(lower, tmp_path, script, Resources(pids=32))
    counts = [int(line) for line in out.splitlines() if line.isdigit()]
    assert counts and counts[-1] <= 32
    assert "can't fork" in out
    assert result.exit_code == 0  # PID 1 itself went on; its exit took the bomb down
    assert leftover_cgroups() == before


def test_without_limits_the_same_bomb_is_not_refused(lower: Path, tmp_path: Path) -> None:
    # Bounded: 40 background sleeps, well above the limit used below.
    script = "i=0; while [ $i -lt 40 ]; do sleep 1 & i=$((i+1)); done; echo done"
    result, out = run_limited(lower, tmp_path, script, Resources())
    assert (result.exit_code, out.strip()) == (0, "done")
    limited, out = run_limited(lower, tmp_path / "x", script, Resources(pids=20))
    assert "can't fork" in out
    assert limited.error is not None and "pids limit (20)" in limited.error


def test_container_runs_inside_its_cgroup(lower: Path, tmp_path: Path) -> None:
    result, out = run_limited(lower, tmp_path, "cat /proc/self/cgroup", Resources(cpus=0.5))
    cpu_line = next(line for line in out.splitlines() if ":cpu:" in line or line.startswith("0::"))
    assert result.exit_code == 0
    assert "/pybuild/pybuild-" in cpu_line


def test_cgroup_files_get_the_limits_and_removal_cleans_up() -> None:
    name = f"pybuild-test-{secrets.token_hex(4)}"
    group = cgroups.create(name, Resources(memory=64 * MIB, pids=50, cpus=1.5))
    try:
        values = {}
        for path in group.dirs:
            for file in path.iterdir():
                if file.name in {
                    "memory.limit_in_bytes",
                    "memory.max",
                    "pids.max",
                    "cpu.cfs_quota_us",
                    "cpu.max",
                }:
                    values[file.name] = file.read_text().strip()
    finally:
        cgroups.remove(group)
    assert values.get("memory.limit_in_bytes", values.get("memory.max")) == str(64 * MIB)
    assert values["pids.max"] == "50"
    assert values.get("cpu.cfs_quota_us", values.get("cpu.max", "").split(" ")[0]) == "150000"
    assert not any(path.exists() for path in group.dirs)
