"""Rootless mode: move pybuild into a user namespace where the calling user is root.

A non-root user runs the whole of pybuild (builder, extraction, snapshots and every
sandbox) inside one user namespace, entered at start-up while the process is still
single-threaded (unshare(2) refuses CLONE_NEWUSER in a multi-threaded process):

* full mapping: when ``/etc/subuid`` and ``/etc/subgid`` grant the user a range and the
  setuid helpers ``newuidmap``/``newgidmap`` (Debian ``uidmap``) exist, container id 0 is
  the user and ids 1..N are the subordinate range, so ``chown`` to other ids works;
* single mapping: otherwise only id 0 (the user itself) exists inside. ``chown`` to any
  other id fails with EINVAL ("Invalid argument"); a container USER other than root is
  refused with a message saying how to get a range.

user_namespaces(7) "Defining user and group ID mappings"; no other privilege is used.
"""

from __future__ import annotations

import errno
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime import linux
from runtime.errors import SandboxError, SyscallError
from runtime.spec import RunResult

CLONE_NEWUSER = 0x10000000
SUBUID_FILE = Path("/etc/subuid")
SUBGID_FILE = Path("/etc/subgid")
# The initial user namespace maps every id to itself.
_IDENTITY_MAP = ("0", "0", "4294967295")
_RANGE_HINT = (
    "grant the user a subordinate id range (e.g. `usermod --add-subuids 100000-165535 "
    "--add-subgids 100000-165535 USER`) and install newuidmap/newgidmap (apt install uidmap)"
)
# Reads one line (the go-ahead, sent once we have unshared) then writes our maps.
_HELPER_SCRIPT = 'read _ok || exit 1; newuidmap "$1" $2 && newgidmap "$1" $3'


@dataclass(frozen=True)
class IdMap:
    """``count`` ids from ``inside`` (in the namespace) map to ``outside`` (on the host)."""

    inside: int
    outside: int
    count: int


@dataclass(frozen=True)
class UserNsPlan:
    """The maps to install; ``full`` means subordinate ranges through newuidmap."""

    uid_maps: tuple[IdMap, ...]
    gid_maps: tuple[IdMap, ...]
    full: bool


def subordinate_ranges(path: Path, user: str, uid: int) -> tuple[tuple[int, int], ...]:
    """The ``(start, count)`` ranges ``path`` (subuid(5) format) grants ``user`` or
    ``uid``; empty when the file is missing or has no entry."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    ranges: list[tuple[int, int]] = []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            ranges.append((start, count))
    return tuple(ranges)


def plan_mappings(
    uid: int,
    gid: int,
    user: str,
    *,
    subuid: Path = SUBUID_FILE,
    subgid: Path = SUBGID_FILE,
    helpers: bool | None = None,
) -> UserNsPlan:
    """The full mapping when ``user`` has both ranges and the helpers exist (``helpers``
    None: look on PATH), else the single-id mapping."""
    uid_ranges = subordinate_ranges(subuid, user, uid)
    gid_ranges = subordinate_ranges(subgid, user, uid)
    if helpers is None:
        import shutil  # rootless start-up only: not in every sandbox

        helpers = all(shutil.which(h) for h in ("newuidmap", "newgidmap"))
    if not (uid_ranges and gid_ranges and helpers):
        return UserNsPlan((IdMap(0, uid, 1),), (IdMap(0, gid, 1),), full=False)
    return UserNsPlan(_stack(uid, uid_ranges), _stack(gid, gid_ranges), full=True)


def _stack(own: int, ranges: tuple[tuple[int, int], ...]) -> tuple[IdMap, ...]:
    """0 -> ``own``, then the ranges one after the other from id 1."""
    maps = [IdMap(0, own, 1)]
    inside = 1
    for start, count in ranges:
        maps.append(IdMap(inside, start, count))
        inside += count
    return tuple(maps)


def in_initial_namespace(uid_map: Path = Path("/proc/self/uid_map")) -> bool:
    """True unless this process runs in a user namespace (other than the host's)."""
    try:
        return tuple(uid_map.read_text().split()) == _IDENTITY_MAP
    except OSError:
        return True  # no /proc/self/uid_map: a kernel without user namespaces


def mapped_id_count(uid_map: Path = Path("/proc/self/uid_map")) -> int:
    """How many uids exist in this process's user namespace (1: the single mapping)."""
    fields = uid_map.read_text().split()
    return sum(int(n) for n in fields[2::3])


def enter_rootless() -> UserNsPlan | None:
    """As a non-root user on the host, enter a new user namespace as its root.

    Returns the plan used, or None when there is nothing to do (root on the host, or
    already inside a user namespace). Call while single-threaded. Raises
    :class:`SandboxError` with a hint when user namespaces are unavailable.
    """
    if os.geteuid() == 0 or not in_initial_namespace():
        return None
    plan = own_plan()
    if plan.full:
        _enter_full(plan)
    else:
        _enter_single(plan)
    return plan


def own_plan() -> UserNsPlan:
    """The mappings this (non-root) user's namespaces get."""
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return plan_mappings(uid, gid, name)


def join(path: str) -> None:
    """Join the user namespace at ``path`` (e.g. ``/proc/PID/ns/user`` of a process of
    ours) instead of making one: we become its root, as after :func:`enter_rootless`.
    Call while single-threaded; SandboxError when it fails."""
    try:
        linux.setns(path, CLONE_NEWUSER)
    except SyscallError as exc:
        raise SandboxError(
            f"cannot join the user namespace of the network: {exc.message}",
            hint="the network's holder process belongs to another user or is gone: "
            "`pybuild network rm` it and create it again",
        ) from None


def map_commands(pid: int, plan: UserNsPlan) -> list[list[str]]:
    """The newuidmap and newgidmap command lines that install ``plan`` for process
    ``pid`` (full mapping only: a single mapping is written to /proc by
    :func:`map_child`)."""
    return [["newuidmap", str(pid), *_map_args(plan.uid_maps).split()],
            ["newgidmap", str(pid), *_map_args(plan.gid_maps).split()]]  # fmt: skip


def map_child(pid: int, plan: UserNsPlan) -> None:
    """Install ``plan`` for process ``pid``, which has just unshared a user namespace
    whose parent is ours (user_namespaces(7): a process of the namespace's owner in the
    parent namespace may write a single mapping of its own ids; the ranges need the
    setuid helpers). SandboxError when it fails."""
    if not plan.full:
        uid_map, gid_map = plan.uid_maps[0], plan.gid_maps[0]
        for name, text in (
            ("uid_map", f"0 {uid_map.outside} 1"),
            ("setgroups", "deny"),
            ("gid_map", f"0 {gid_map.outside} 1"),
        ):
            try:
                Path(f"/proc/{pid}", name).write_text(text)
            except OSError as exc:
                raise SandboxError(f"cannot write /proc/{pid}/{name}: {exc.strerror}") from exc
        return
    import subprocess  # the full mapping only: not in every sandbox

    for command in map_commands(pid, plan):
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise SandboxError(f"cannot run {command[0]}: {exc}", hint=_RANGE_HINT) from exc
        if done.returncode != 0:
            raise SandboxError(
                f"{command[0]} could not map the subordinate ids: {done.stderr.strip()}",
                hint=_RANGE_HINT,
            )


def _unshare_user() -> None:
    try:
        linux.unshare(CLONE_NEWUSER)
    except SyscallError as exc:
        import threading

        if exc.errno == errno.EINVAL and threading.active_count() > 1:
            raise SandboxError(
                "cannot enter a user namespace: pybuild already runs several threads",
                hint="this is a pybuild bug: rootless set-up must come before any thread",
            ) from None
        raise SyscallError(  # still the syscall's error: auto isolation reads errno
            f"cannot create a user namespace for rootless mode: {exc.message}",
            call="unshare",
            errno=exc.errno,
            hint="enable unprivileged user namespaces (sysctl user.max_user_namespaces, "
            "kernel.unprivileged_userns_clone=1), or run pybuild as root",
        ) from None


def _enter_single(plan: UserNsPlan) -> None:
    _unshare_user()
    uid_map, gid_map = plan.uid_maps[0], plan.gid_maps[0]
    # An unprivileged process may write its own one-line maps, gid_map only after
    # denying setgroups (user_namespaces(7), "Interaction with system calls changing ids").
    _write_proc("setgroups", "deny")
    _write_proc("uid_map", f"0 {uid_map.outside} 1")
    _write_proc("gid_map", f"0 {gid_map.outside} 1")


def _enter_full(plan: UserNsPlan) -> None:
    import subprocess  # rootless start-up only: not in every sandbox

    # The helper must start before we unshare: newuidmap needs to run in the parent
    # namespace (it is setuid root there) and write maps for our pid.
    try:
        helper = subprocess.Popen(
            [
                "/bin/sh",
                "-c",
                _HELPER_SCRIPT,
                "pybuild-idmap",
                str(os.getpid()),
                _map_args(plan.uid_maps),
                _map_args(plan.gid_maps),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise SandboxError(f"cannot start newuidmap: {exc}", hint=_RANGE_HINT) from exc
    try:
        _unshare_user()
    except SandboxError:
        helper.kill()
        helper.wait()
        raise
    _, err = helper.communicate(b"go\n")
    if helper.returncode != 0:
        raise SandboxError(
            "newuidmap/newgidmap could not map the subordinate ids: "
            + err.decode(errors="replace").strip(),
            hint=_RANGE_HINT,
        )


def _map_args(maps: tuple[IdMap, ...]) -> str:
    return " ".join(f"{m.inside} {m.outside} {m.count}" for m in maps)


def _write_proc(name: str, text: str) -> None:
    try:
        Path("/proc/self", name).write_text(text)
    except OSError as exc:
        raise SandboxError(
            f"cannot write /proc/self/{name} for rootless mode: {exc.strerror}"
        ) from exc


def single_mapping_hint() -> str:
    """What to tell a user whose container needs ids the single mapping lacks."""
    return "rootless with a single-id mapping: only uid/gid 0 exist inside. " + _RANGE_HINT


def explain_single_mapping(result: RunResult) -> RunResult:
    """In a rootless single-id user namespace a failure may come from a chown or setuid
    to an id that does not exist here (EINVAL); say so beside the exit code."""
    if result.exit_code == 0 or result.error is not None or in_initial_namespace():
        return result
    if mapped_id_count() != 1:
        return result
    why = (
        f"exit code {result.exit_code} (note: {single_mapping_hint()}; chown or setuid "
        "to another id fails there with 'Invalid argument')"
    )
    return RunResult(result.exit_code, result.signal, why)


def become(uid: int, gid: int, groups: Sequence[int], name: str) -> None:
    """setgroups, setgid, setuid; in a rootless single-id user namespace, where
    setgroups is denied and only id 0 exists, raise :class:`SandboxError` saying so
    instead of a bare EPERM/EINVAL."""
    missing = SandboxError(
        f"user {name!r} (uid {uid}, gid {gid}) has no id in this rootless sandbox",
        hint=single_mapping_hint(),
    )
    try:
        os.setgroups(list(groups))
    except PermissionError:
        if not _setgroups_denied():
            raise
        if set(groups) - {0}:
            raise missing from None
    try:
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise missing from None


def _setgroups_denied() -> bool:
    try:
        return Path("/proc/self/setgroups").read_text().strip() == "deny"
    except OSError:
        return False
