"""What to run and on which root: plain, frozen values and their JSON form.

``runtime`` knows nothing of images or Dockerfiles: the caller turns an image config into a
:class:`ContainerSpec` over unpacked layer directories. The JSON form is how
``runtime.sandbox`` hands a spec to the ``runtime.init`` process; it is an internal wire
format (not OCI ``config.json``), versioned so a mismatch fails loudly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import SandboxError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without loading typing (the fork server's start)
if TYPE_CHECKING:
    from typing import Any

SPEC_FORMAT = 2
# host: the caller's network namespace; none: a new one with only loopback; netns: join
# the namespace bound at ``ContainerSpec.netns``; default: a private network with outbound
# access, which the caller makes (:mod:`runtime.netns`, :mod:`runtime.netpool`) and turns
# into netns before the sandbox starts (an OCI bundle gets a loopback-only namespace).
NETWORK_MODES = ("default", "host", "none", "netns")
MAX_MODE = 0o7777


@dataclass(frozen=True)
class BindMount:
    """Bind ``source`` (a host path) at ``target`` (absolute, inside the container)."""

    source: Path
    target: str
    readonly: bool = False


@dataclass(frozen=True)
class TmpfsMount:
    """A fresh tmpfs at ``target`` (absolute, inside the container), like ``--tmpfs``.

    ``size`` is in bytes (None: the kernel's default, half of RAM); ``mode`` is the
    permission bits of its root directory. Mounted nosuid and nodev, as docker does.
    """

    target: str
    size: int | None = None
    mode: int = 0o1777


@dataclass(frozen=True)
class Resources:
    """Limits for the whole container, docker's ``--memory``, ``--pids-limit``, ``--cpus``.

    ``memory`` in bytes (swap is not granted beyond it), ``pids`` the most tasks at once,
    ``cpus`` a number of CPUs' worth of time (1.5 = 150 ms per 100 ms period).
    None means unlimited.
    """

    memory: int | None = None
    pids: int | None = None
    cpus: float | None = None

    @property
    def limited(self) -> bool:
        """True when any limit is set (the container then gets a cgroup of its own)."""
        return self.memory is not None or self.pids is not None or self.cpus is not None


@dataclass(frozen=True)
class Rootfs:
    """An overlay root: ``lowers`` top-most first (may be empty), ``upper`` gets every change.

    ``work`` is overlayfs's scratch dir: empty, on the same filesystem as ``upper``.
    ``volatile``: the caller makes the upper's content durable another way (a build
    step's layer blob, fsynced) or throws it away, so overlayfs may skip every sync of
    the upper filesystem (its ``volatile`` option): the whole-filesystem sync at unmount
    and the container's own fsync calls. Never for a container whose upper is its data
    (``pybuild run``).
    """

    lowers: tuple[Path, ...]
    upper: Path
    work: Path
    volatile: bool = False


@dataclass(frozen=True)
class Rlimit:
    """A resource limit (docker's ``--ulimit NAME=SOFT[:HARD]``) set before the exec.

    ``name`` is the lower-case suffix of ``RLIMIT_*`` (``nofile``, ``nproc``, ...);
    -1 is unlimited."""

    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class ContainerSpec:
    """One process to run in a fresh sandbox; field semantics follow ``docker run``."""

    rootfs: Rootfs
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    hostname: str = "pybuild"
    network: str = "host"
    netns: str = ""  # with network="netns": the bound namespace file to join
    mounts: tuple[BindMount, ...] = ()
    hosts: str = ""
    resolv_conf: str = ""
    tty: bool = False
    readonly_rootfs: bool = False
    tmpfs: tuple[TmpfsMount, ...] = ()
    resources: Resources = Resources()
    # Skip the lock-down (capabilities, no_new_privs, seccomp, masked and read-only /proc
    # paths), as docker's --privileged and BuildKit's RUN --security=insecure do.
    privileged: bool = False
    # no_new_privs (docker's --security-opt no-new-privileges): setuid binaries and file
    # capabilities grant nothing. Off by default, as in docker, so `sudo` works.
    no_new_privs: bool = False
    # An init of ours as PID 1 (docker's --init): forwards signals to the command and
    # reaps orphaned zombies; the command then runs as PID 2.
    init: bool = False
    # Where the sandbox makes its scratch dir for the run (None: the system temp dir).
    # Callers pass a dir they own and sweep, so a killed run leaves nothing elsewhere.
    scratch: Path | None = None
    # The size of /dev/shm in bytes (docker's --shm-size); None: docker's 64 MiB.
    shm_size: int | None = None
    rlimits: tuple[Rlimit, ...] = ()  # docker's --ulimit


@dataclass(frozen=True)
class RunResult:
    """How the container ended, docker style.

    ``exit_code`` is the process status, 128+N when killed by signal N, 126 when the command
    cannot be executed and 127 when it is not found; ``error`` then says why.
    """

    exit_code: int
    signal: int | None = None
    error: str | None = None


def validate_spec(spec: ContainerSpec) -> None:
    """Raise :class:`SandboxError` when ``spec`` cannot describe a runnable container."""
    problems: list[str] = []
    if not spec.args:
        problems.append("no command given (args is empty)")
    if not spec.cwd.startswith("/"):
        problems.append(f"working directory {spec.cwd!r} is not absolute")
    if spec.network not in NETWORK_MODES:
        problems.append(f"network {spec.network!r} is not one of {', '.join(NETWORK_MODES)}")
    if (spec.network == "netns") != bool(spec.netns):
        problems.append("a network namespace file is given exactly with network 'netns'")
    problems += [f"env entry {e!r} has no '='" for e in spec.env if "=" not in e]
    problems += [f"env entry {e!r} has an empty name" for e in spec.env if e.startswith("=")]
    problems += [
        f"mount target {m.target!r} is not absolute"
        for m in spec.mounts
        if not m.target.startswith("/")
    ]
    problems += _tmpfs_problems(spec.tmpfs)
    problems += _resource_problems(spec.resources)
    if any("\0" in text for text in (*spec.args, *spec.env, spec.cwd, spec.user)):
        problems.append("an argument, env entry, cwd or user contains a NUL byte")
    if problems:
        raise SandboxError("invalid container spec: " + "; ".join(problems))


def _tmpfs_problems(mounts: tuple[TmpfsMount, ...]) -> list[str]:
    problems: list[str] = []
    for m in mounts:
        if not m.target.startswith("/") or "\0" in m.target:
            problems.append(f"tmpfs target {m.target!r} is not an absolute path")
        if m.size is not None and m.size <= 0:
            problems.append(f"tmpfs size {m.size} for {m.target} is not positive")
        if not 0 <= m.mode <= MAX_MODE:
            problems.append(f"tmpfs mode {m.mode:#o} for {m.target} is not a permission mode")
    return problems


def _resource_problems(res: Resources) -> list[str]:
    problems: list[str] = []
    if res.memory is not None and res.memory <= 0:
        problems.append(f"memory limit {res.memory} is not positive")
    if res.pids is not None and res.pids <= 0:
        problems.append(f"pids limit {res.pids} is not positive")
    if res.cpus is not None and not res.cpus > 0:
        problems.append(f"cpus {res.cpus} is not positive")
    return problems


def spec_to_json(spec: ContainerSpec) -> str:
    """Serialise ``spec`` for :func:`spec_from_json` (paths become strings)."""
    body: dict[str, Any] = {
        "format": SPEC_FORMAT,
        "rootfs": {
            "lowers": [str(p) for p in spec.rootfs.lowers],
            "upper": str(spec.rootfs.upper),
            "work": str(spec.rootfs.work),
            "volatile": spec.rootfs.volatile,
        },
        "args": list(spec.args),
        "env": list(spec.env),
        "cwd": spec.cwd,
        "user": spec.user,
        "hostname": spec.hostname,
        "network": spec.network,
        "netns": spec.netns,
        "mounts": [
            {"source": str(m.source), "target": m.target, "readonly": m.readonly}
            for m in spec.mounts
        ],
        "hosts": spec.hosts,
        "resolv_conf": spec.resolv_conf,
        "tty": spec.tty,
        "readonly_rootfs": spec.readonly_rootfs,
        "tmpfs": [{"target": m.target, "size": m.size, "mode": m.mode} for m in spec.tmpfs],
        "resources": {
            "memory": spec.resources.memory,
            "pids": spec.resources.pids,
            "cpus": spec.resources.cpus,
        },
        "privileged": spec.privileged,
        "init": spec.init,
        "no_new_privs": spec.no_new_privs,
        "scratch": None if spec.scratch is None else str(spec.scratch),
        "shm_size": spec.shm_size,
        "rlimits": [[r.name, r.soft, r.hard] for r in spec.rlimits],
    }
    return json.dumps(body, sort_keys=True)


def spec_from_json(text: str) -> ContainerSpec:
    """Parse what :func:`spec_to_json` wrote; raise :class:`SandboxError` if malformed."""
    try:
        body = json.loads(text)
        if body.get("format") != SPEC_FORMAT:
            raise ValueError(f"unsupported spec format {body.get('format')!r}")
        root = body["rootfs"]
        return ContainerSpec(
            rootfs=Rootfs(
                lowers=tuple(Path(_str(p)) for p in root["lowers"]),
                upper=Path(_str(root["upper"])),
                work=Path(_str(root["work"])),
                volatile=root.get("volatile", False) is True,
            ),
            args=tuple(_str(a) for a in body["args"]),
            env=tuple(_str(e) for e in body["env"]),
            cwd=_str(body["cwd"]),
            user=_str(body["user"]),
            hostname=_str(body["hostname"]),
            network=_str(body["network"]),
            netns=_str(body.get("netns", "")),
            mounts=tuple(
                BindMount(Path(_str(m["source"])), _str(m["target"]), _bool(m["readonly"]))
                for m in body["mounts"]
            ),
            hosts=_str(body["hosts"]),
            resolv_conf=_str(body["resolv_conf"]),
            tty=_bool(body["tty"]),
            readonly_rootfs=_bool(body["readonly_rootfs"]),
            tmpfs=tuple(
                TmpfsMount(_str(m["target"]), _opt_int(m["size"]), _int(m["mode"]))
                for m in body["tmpfs"]
            ),
            resources=_resources(body["resources"]),
            privileged=_bool(body["privileged"]),
            init=_bool(body.get("init", False)),
            no_new_privs=_bool(body.get("no_new_privs", False)),
            scratch=None if body.get("scratch") is None else Path(_str(body["scratch"])),
            shm_size=_opt_int(body.get("shm_size")),
            rlimits=tuple(
                Rlimit(_str(n), _int(soft), _int(hard)) for n, soft, hard in body.get("rlimits", [])
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SandboxError(f"malformed container spec JSON: {exc}") from exc


def _resources(body: dict[str, Any]) -> Resources:
    cpus = body["cpus"]
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int | float)):
        raise TypeError(f"expected a number of cpus, got {cpus!r}")
    return Resources(
        _opt_int(body["memory"]), _opt_int(body["pids"]), None if cpus is None else float(cpus)
    )


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _opt_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {value!r}")
    return value
