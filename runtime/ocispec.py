"""A :class:`ContainerSpec` as an OCI runtime bundle (``config.json`` + a rootfs dir).

The config describes the same container our own sandbox runs (runtime-spec ``config.md``
and ``config-linux.md``): the same mounts, namespaces, docker's default capabilities,
no_new_privs, masked and read-only paths, seccomp profile and resource limits; so
``runc run`` of the bundle behaves like ``runtime.sandbox.run`` of the spec. The user is
resolved to numeric ids against the bundle's rootfs, as runtimes take only numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runtime import seccomp
from runtime.errors import SandboxError
from runtime.rootsetup import MASKED_PATHS, READONLY_PATHS
from runtime.security import DEFAULT_CAPABILITIES
from runtime.spec import ContainerSpec, validate_spec
from runtime.users import resolve_user

OCI_VERSION = "1.0.2"
CPU_PERIOD_US = 100_000
_NO_EXEC = ["nosuid", "noexec", "nodev"]
_ARCH_NAMES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def oci_config(
    spec: ContainerSpec, rootfs: Path, *, root_path: str | None = None
) -> dict[str, Any]:
    """The ``config.json`` document for ``spec`` run on the plain directory ``rootfs``.

    ``spec.rootfs`` (overlay layers) is not used: the bundle's root is ``rootfs``, written
    as ``root_path`` (default: its absolute path). Raises :class:`SandboxError` for an
    invalid spec and ``UserNotFound`` when the user is not in the rootfs's /etc/passwd.
    """
    validate_spec(spec)
    user = resolve_user(rootfs, spec.user)
    caps = list(DEFAULT_CAPABILITIES)
    held = caps if user.uid == 0 else []  # docker: a non-root user holds none
    env = list(spec.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")
    process: dict[str, Any] = {
        "terminal": spec.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.groups)},
        "args": list(spec.args),
        "env": env,
        "cwd": spec.cwd,
        "noNewPrivileges": spec.no_new_privs and not spec.privileged,
    }
    if not spec.privileged:
        process["capabilities"] = {
            "bounding": caps,
            "effective": held,
            "permitted": held,
            "inheritable": [],
            "ambient": [],
        }
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": root_path or str(rootfs.resolve()), "readonly": spec.readonly_rootfs},
        "hostname": spec.hostname,
        "mounts": _mounts(spec),
        "linux": _linux(spec),
    }
    return config


def write_bundle(spec: ContainerSpec, rootfs: Path, bundle: Path) -> Path:
    """Write ``bundle/config.json`` (plus the hosts and resolv.conf files it binds) for
    ``spec`` over the existing directory ``rootfs``; returns the config's path.

    ``rootfs`` inside ``bundle`` is referred to relatively, so the bundle can be moved.
    """
    if not rootfs.is_dir():
        raise SandboxError(f"bundle rootfs {rootfs} is not a directory")
    bundle.mkdir(parents=True, exist_ok=True)
    hosts = spec.hosts or f"127.0.0.1\tlocalhost {spec.hostname}\n::1\tlocalhost\n"
    (bundle / "hosts").write_text(hosts, encoding="utf-8")
    (bundle / "resolv.conf").write_text(spec.resolv_conf or _host_resolv(), encoding="utf-8")
    try:
        root_path = str(rootfs.resolve().relative_to(bundle.resolve()))
    except ValueError:
        root_path = None
    config = oci_config(spec, rootfs, root_path=root_path)
    targets = {m["destination"] for m in config["mounts"]}
    for name in ("hosts", "resolv.conf"):
        if f"/etc/{name}" not in targets:
            config["mounts"].append(_bind(str((bundle / name).resolve()), f"/etc/{name}", False))
    path = bundle / "config.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _host_resolv() -> str:
    try:
        return Path("/etc/resolv.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _bind(source: str, target: str, readonly: bool) -> dict[str, Any]:
    options = ["rbind", "rprivate"] + (["ro"] if readonly else [])
    return {"destination": target, "type": "bind", "source": source, "options": options}


def _mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    """runc's default mounts, as ``runtime.rootsetup`` makes them, then the user's."""
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": _NO_EXEC},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*_NO_EXEC, "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": _NO_EXEC},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*_NO_EXEC, "ro"]},
    ]
    user: list[tuple[str, dict[str, Any]]] = [
        (m.target, _bind(str(m.source), m.target, m.readonly)) for m in spec.mounts
    ]
    for t in spec.tmpfs:
        options = ["nosuid", "nodev", f"mode={t.mode:o}"]
        if t.size is not None:
            options.append(f"size={t.size}")
        user.append((t.target, {"destination": t.target, "type": "tmpfs", "source": "tmpfs",
                                "options": options}))  # fmt: skip
    user.sort(key=lambda pair: pair[0].rstrip("/").count("/"))  # parents first
    return mounts + [mount for _, mount in user]


def _linux(spec: ContainerSpec) -> dict[str, Any]:
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if spec.network in ("none", "default"):
        # A bundle has no network helper: the default network is a private namespace
        # with only loopback there, never the host's.
        namespaces.append({"type": "network"})
    elif spec.network == "netns":
        namespaces.append({"type": "network", "path": spec.netns})
    linux: dict[str, Any] = {"namespaces": namespaces}
    resources: dict[str, Any] = {}
    if not spec.privileged:
        # Deny every device, as docker does; runc then allows its default set (null, zero,
        # full, random, urandom, tty, console, ptmx, pts) after this rule.
        resources["devices"] = [{"allow": False, "access": "rwm"}]
    res = spec.resources
    if res.memory is not None:
        resources["memory"] = {"limit": res.memory, "swap": res.memory}
    if res.pids is not None:
        resources["pids"] = {"limit": res.pids}
    if res.cpus is not None:
        resources["cpu"] = {"quota": round(res.cpus * CPU_PERIOD_US), "period": CPU_PERIOD_US}
    linux["resources"] = resources
    if not spec.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        linux["seccomp"] = _seccomp()
    return linux


def _seccomp() -> dict[str, Any]:
    """``runtime.seccomp``'s profile in runtime-spec form (``config-linux.md#seccomp``)."""

    def arg(op: str, value: int, value_two: int = 0) -> dict[str, Any]:
        return {"index": 0, "value": value, "valueTwo": value_two, "op": op}

    syscalls: list[dict[str, Any]] = [
        {"names": list(seccomp.ALLOWED), "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [arg("SCMP_CMP_MASKED_EQ", seccomp.CLONE_NAMESPACE_FLAGS)],
        },
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},  # ENOSYS
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [arg("SCMP_CMP_NE", seccomp.AF_VSOCK)],
        },
    ]
    syscalls += [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [arg("SCMP_CMP_EQ", p)]}
        for p in seccomp.PERSONAS
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": _ARCH_NAMES.get(os.uname().machine, []),
        "syscalls": syscalls,
    }
