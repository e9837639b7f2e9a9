"""The cgroup v2 code path of runtime/cgroups.py, against a fake cgroupfs in a tmp dir.

This machine is v1/hybrid, so the real-kernel tests (tests/integration/test_resources.py)
only exercise v1. Here a small fake kernel stands in for cgroup2: making a directory under
the fake root fills it with the interface files the kernel would show (only for the
controllers the fake offers), and removing one drops them first, as rmdir on cgroupfs does.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime import cgroups
from runtime.errors import SandboxError
from runtime.spec import Resources

MIB = 1024 * 1024
OWN = "user.slice/user-0.slice/session-1.scope"
_CORE = ("cgroup.controllers", "cgroup.subtree_control", "cgroup.procs", "cgroup.events")
_BY_CONTROLLER = {
    "memory": ("memory.max", "memory.swap.max", "memory.events"),
    "pids": ("pids.max", "pids.events"),
    "cpu": ("cpu.max",),
}


@dataclass(frozen=True)
class FakeV2:
    root: Path
    self_cgroup: Path


def _fill(path: Path, controllers: tuple[str, ...]) -> None:
    for name in _CORE:
        (path / name).write_text("")
    (path / "cgroup.controllers").write_text(" ".join(controllers) + "\n")
    for controller in controllers:
        for name in _BY_CONTROLLER[controller]:
            (path / name).write_text("max\n" if name.endswith(".max") else "")


def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, controllers: tuple[str, ...]) -> FakeV2:
    root = tmp_path / "cgroup"
    real_mkdir, real_rmdir = Path.mkdir, Path.rmdir

    def mkdir(self: Path, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        fresh = not self.exists()
        real_mkdir(self, mode, parents, exist_ok)
        if fresh and self.is_relative_to(root):
            _fill(self, controllers)

    def rmdir(self: Path) -> None:
        if self.is_relative_to(root) and self.is_dir():
            if any(p.is_dir() for p in self.iterdir()):
                real_rmdir(self)  # raises ENOTEMPTY as the kernel's EBUSY would
            for file in self.iterdir():
                file.unlink()
        real_rmdir(self)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(Path, "rmdir", rmdir)
    (root / OWN).mkdir(parents=True)
    for path in [root, *(root / OWN).parents, root / OWN]:
        if path.is_relative_to(root) and not (path / "cgroup.controllers").exists():
            _fill(path, controllers)
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text(f"0::/{OWN}\n")
    return FakeV2(root, self_cgroup)


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeV2]:
    yield _fake(tmp_path, monkeypatch, ("memory", "pids", "cpu"))


def test_v2_cgroup_is_made_below_our_own_in_a_pybuild_parent(v2: FakeV2) -> None:
    group = cgroups.create("c1", Resources(pids=10), v2.root, v2.self_cgroup)
    assert group.unified
    assert group.dirs == (v2.root / OWN / "pybuild" / "c1",)


def test_v2_limits_are_written_as_runc_writes_them(v2: FakeV2) -> None:
    group = cgroups.create(
        "c1", Resources(memory=64 * MIB, pids=50, cpus=1.5), v2.root, v2.self_cgroup
    )
    (path,) = group.dirs
    assert (path / "memory.max").read_text() == str(64 * MIB)
    assert (path / "memory.swap.max").read_text() == "0"  # no swap beyond the limit
    assert (path / "pids.max").read_text() == "50"
    assert (path / "cpu.max").read_text() == "150000 100000"


def test_v2_tiny_cpus_is_raised_to_the_kernels_minimum_quota(v2: FakeV2) -> None:
    (path,) = cgroups.create("c1", Resources(cpus=0.001), v2.root, v2.self_cgroup).dirs
    assert (path / "cpu.max").read_text() == "1000 100000"


def test_v2_controllers_are_enabled_down_to_the_pybuild_parent(v2: FakeV2) -> None:
    cgroups.create("c1", Resources(memory=MIB, pids=5), v2.root, v2.self_cgroup)
    for path in (v2.root / OWN, v2.root / OWN / "pybuild"):
        assert (path / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_v2_join_writes_the_caller_into_cgroup_procs(v2: FakeV2) -> None:
    group = cgroups.create("c1", Resources(pids=5), v2.root, v2.self_cgroup)
    cgroups.join(group)
    assert (group.dirs[0] / "cgroup.procs").read_text() == "0"


def test_v2_oom_kill_and_pids_max_are_read_from_the_event_files(v2: FakeV2) -> None:
    group = cgroups.create("c1", Resources(memory=MIB, pids=5), v2.root, v2.self_cgroup)
    (path,) = group.dirs
    assert not cgroups.oom_killed(group) and not cgroups.pids_limit_hit(group)
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    (path / "pids.events").write_text("max 3\n")
    assert cgroups.oom_killed(group)
    assert cgroups.pids_limit_hit(group)


def test_v2_remove_deletes_the_container_cgroup(v2: FakeV2) -> None:
    group = cgroups.create("c1", Resources(pids=5), v2.root, v2.self_cgroup)
    cgroups.remove(group)
    assert not group.dirs[0].exists()
    assert (v2.root / OWN / "pybuild").is_dir()  # shared by other containers


def test_v2_missing_controller_fails_with_a_hint_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake(tmp_path, monkeypatch, ("pids", "cpu"))  # no memory controller
    with pytest.raises(SandboxError) as caught:
        cgroups.create("c1", Resources(memory=MIB), fake.root, fake.self_cgroup)
    assert "memory.max" in str(caught.value)
    assert caught.value.hint and "cgroup" in caught.value.hint
    assert not (fake.root / OWN / "pybuild" / "c1").exists()


def test_v2_at_the_hierarchy_root_uses_the_top_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake(tmp_path, monkeypatch, ("memory", "pids", "cpu"))
    fake.self_cgroup.write_text("0::/\n")  # e.g. inside a container's cgroup namespace
    group = cgroups.create("c1", Resources(pids=5), fake.root, fake.self_cgroup)
    assert group.dirs == (fake.root / "pybuild" / "c1",)


def test_v2_busy_own_cgroup_falls_back_to_a_top_level_pybuild_cgroup(
    v2: FakeV2, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session cgroup with processes refuses subtree_control (EBUSY) on a real host."""
    busy = v2.root / OWN / "cgroup.subtree_control"
    real_write = Path.write_text

    def write_text(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if self == busy:
            raise OSError(errno.EBUSY, "Device or resource busy", str(self))
        return real_write(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write_text)
    group = cgroups.create("c1", Resources(memory=MIB), v2.root, v2.self_cgroup)
    assert group.dirs == (v2.root / "pybuild" / "c1",)
    assert (v2.root / "pybuild" / "c1" / "memory.max").read_text() == str(MIB)
