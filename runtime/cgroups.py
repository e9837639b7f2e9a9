"""Per-container cgroups for ``--memory``, ``--pids-limit`` and ``--cpus``.

Works on the unified hierarchy (cgroup v2) and on v1 or hybrid hosts (v1 controllers
``memory``, ``pids``, ``cpu`` each mounted under /sys/fs/cgroup/<controller>). The
container's cgroup is made below the cgroup pybuild itself runs in, so limits set on
pybuild (a CI job's, a systemd unit's) still bound it. Files written, as runc does:

====================  ==================================  ===========================
limit                 v1                                  v2
====================  ==================================  ===========================
memory                memory.limit_in_bytes (and          memory.max, memory.swap.max
                      memory.memsw.limit_in_bytes)        = 0
pids                  pids.max                            pids.max
cpus                  cpu.cfs_period_us, cpu.cfs_quota_us  cpu.max
====================  ==================================  ===========================

Swap is never granted beyond the memory limit, so a memory hog is OOM-killed rather than
swapped out.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import SandboxError
from runtime.spec import Resources

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
CPU_PERIOD_US = 100_000
REMOVE_TIMEOUT = 5.0
_HINT = (
    "resource limits need a writable cgroup hierarchy (v2, or v1 with the memory, pids "
    "and cpu controllers mounted under /sys/fs/cgroup) and root"
)


@dataclass(frozen=True)
class Cgroup:
    """The directories of one container's cgroup: one per v1 controller, or one (v2)."""

    dirs: tuple[Path, ...]
    unified: bool


def needed(res: Resources) -> bool:
    """True when ``res`` sets any limit (no cgroup is made otherwise)."""
    return res.limited


def create(
    name: str, res: Resources, root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP
) -> Cgroup:
    """Make the cgroup ``name`` with the limits of ``res``; raise :class:`SandboxError`.

    ``root`` is the cgroupfs mount and ``self_cgroup`` the /proc/<pid>/cgroup file naming
    our own cgroup; both can point at a fake tree (tests of the v2 path on a v1 host).
    On failure nothing is left behind.
    """
    unified = (root / "cgroup.controllers").exists()
    wanted = _controllers(res)
    if unified:
        parents = {_v2_parent(root, wanted, self_cgroup): wanted}
    else:
        parents = {_v1_parent(root, c, self_cgroup): [c] for c in wanted}
    made: list[Path] = []
    try:
        for parent in parents:
            parent.mkdir(exist_ok=True)
            path = parent / name
            path.mkdir()
            made.append(path)
        group = Cgroup(tuple(made), unified)
        _write_limits(group, res)
    except OSError as exc:
        remove(Cgroup(tuple(made), unified))
        raise SandboxError(f"cannot set up cgroup {name}: {exc}", hint=_HINT) from exc
    return group


def join(group: Cgroup) -> None:
    """Move the calling process into ``group`` (its children follow it)."""
    for path in group.dirs:
        try:
            (path / "cgroup.procs").write_text("0")  # 0: the writer itself (v1 and v2)
        except OSError as exc:
            raise SandboxError(f"cannot join cgroup {path}: {exc}", hint=_HINT) from exc


def oom_killed(group: Cgroup) -> bool:
    """True when the kernel's OOM killer killed a process of ``group``."""
    for path in group.dirs:
        name = "memory.events" if group.unified else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
    return False


def pids_limit_hit(group: Cgroup) -> bool:
    """True when a fork in ``group`` was refused because of pids.max."""
    for path in group.dirs:
        with contextlib.suppress(OSError, ValueError):
            for line in (path / "pids.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max" and int(value) > 0:
                    return True
    return False


def remove(group: Cgroup) -> None:
    """Kill what is left in ``group`` and remove it (waits up to a few seconds)."""
    for path in group.dirs:
        deadline = time.monotonic() + REMOVE_TIMEOUT
        while True:
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    break  # leave it: an empty cgroup costs little, a hang costs more
                _kill_all(path)
                time.sleep(0.02)


def _kill_all(path: Path) -> None:
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1")  # v2, Linux 5.14+
        return
    with contextlib.suppress(OSError, ValueError):
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), 9)


def _controllers(res: Resources) -> list[str]:
    wanted = []
    if res.memory is not None:
        wanted.append("memory")
    if res.pids is not None:
        wanted.append("pids")
    if res.cpus is not None:
        wanted.append("cpu")
    return wanted


def _write_limits(group: Cgroup, res: Resources) -> None:
    def put(name: str, value: str, optional: bool = False) -> None:
        for path in group.dirs:
            if (path / name).exists():
                (path / name).write_text(value)
                return
        if not optional:
            raise OSError(errno.ENOENT, f"no {name} in {', '.join(map(str, group.dirs))}")

    if res.memory is not None:
        if group.unified:
            put("memory.max", str(res.memory))
            put("memory.swap.max", "0", optional=True)
        else:
            put("memory.limit_in_bytes", str(res.memory))
            put("memory.memsw.limit_in_bytes", str(res.memory), optional=True)
    if res.pids is not None:
        put("pids.max", str(res.pids))
    if res.cpus is not None:
        quota = max(1000, round(res.cpus * CPU_PERIOD_US))  # the kernel's minimum is 1 ms
        if group.unified:
            put("cpu.max", f"{quota} {CPU_PERIOD_US}")
        else:
            put("cpu.cfs_period_us", str(CPU_PERIOD_US))
            put("cpu.cfs_quota_us", str(quota))


def _own_cgroups(self_cgroup: Path) -> dict[str, str]:
    """Controller (``""`` for v2) → our cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    for line in self_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _mounts() -> list[tuple[str, Path, str, set[str]]]:
    """(root inside the hierarchy, mount point, fs type, super options) of cgroup mounts."""
    result = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        parts, rest = fields.split(), tail.split()
        if len(parts) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            result.append((parts[3], Path(parts[4]), rest[0], set(rest[2].split(","))))
    return result


def _relative(own: str, mount_root: str) -> str:
    """Our cgroup path as seen below a mount of the hierarchy rooted at ``mount_root``."""
    if mount_root != "/" and (own == mount_root or own.startswith(mount_root + "/")):
        own = own[len(mount_root) :]
    elif mount_root != "/":
        own = "/"  # a bind of some other part of the tree: use its top
    return own.lstrip("/")


def _v1_parent(root: Path, controller: str, self_cgroup: Path) -> Path:
    own = _own_cgroups(self_cgroup).get(controller, "/")
    for mount_root, point, fstype, options in _mounts():
        if fstype == "cgroup" and controller in options and point.is_relative_to(root):
            return point / _relative(own, mount_root) / "pybuild"
    raise OSError(errno.ENOENT, f"the cgroup v1 {controller} controller is not mounted")


def _v2_parent(root: Path, wanted: list[str], self_cgroup: Path) -> Path:
    """A v2 ``pybuild`` cgroup with ``wanted`` enabled down to it.

    First choice: a ``pybuild`` child of our own cgroup, so limits on pybuild bound its
    containers. A cgroup holding processes cannot enable controllers for its children
    (the "no internal processes" rule: EBUSY), which is the usual case for a login
    session or a service on a systemd host; as root the top-level ``pybuild`` cgroup
    serves then (the root cgroup is exempt from that rule).
    """
    own = _own_cgroups(self_cgroup).get("", "/").strip("/")
    try:
        return _enable_below(root / own if own else root, wanted)
    except OSError as exc:
        if not own or exc.errno != errno.EBUSY:
            raise
    return _enable_below(root, wanted)


def _enable_below(base: Path, wanted: list[str]) -> Path:
    parent = base / "pybuild"
    parent.mkdir(exist_ok=True)  # so subtree_control can be written
    enable = " ".join(f"+{c}" for c in wanted)
    for path in (base, parent):
        if enable:
            (path / "cgroup.subtree_control").write_text(enable)
    return parent
