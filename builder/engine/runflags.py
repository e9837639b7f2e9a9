"""A ``POST /containers/create`` body as ``pybuild run -d`` flags: pure, so it is
tested on its own. What pybuild cannot honour is refused (ApiError 400) with the reason,
never silently dropped; settings that change nothing for a one-shot container (restart
policy, log driver) are accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from builder.engine.errors import bad_request

_DEFAULT_NETWORKS = ("", "default", "bridge")


def check_create(body: dict[str, Any]) -> None:
    """400 for what pybuild's API containers do not do."""
    if body.get("Tty"):
        raise bad_request(
            "pybuild serve runs containers without a terminal: drop -t/--tty (tty: true); "
            "`pybuild run -it` gives one locally"
        )
    if body.get("OpenStdin") or body.get("AttachStdin"):
        raise bad_request(
            "pybuild serve does not attach stdin to containers: drop -i/--interactive "
            "(stdin_open: true)"
        )
    if not isinstance(body.get("Image"), str) or not body["Image"]:
        raise bad_request("Image is required")


def run_argv(
    body: dict[str, Any],
    name: str,
    image: str,
    user_network: Callable[[str], str | None],
    aliases: Sequence[str] = (),
) -> list[str]:
    """``run -d --name NAME [flags] IMAGE [ARGS]`` for ``body``. ``user_network(mode)``
    says what a NetworkMode that is no builtin one names: a pybuild user network's name
    (joined, with ``aliases``), "" for a network the server knows by name only (the
    default network), None for no network it knows (refused)."""
    host: dict[str, Any] = body.get("HostConfig") or {}
    argv = ["run", "-d", "--name", name, "--log-streams"]
    for env in body.get("Env") or []:
        argv += ["-e", str(env)]
    if workdir := body.get("WorkingDir"):
        argv += ["-w", str(workdir)]
    if user := body.get("User"):
        argv += ["-u", str(user)]
    if hostname := body.get("Hostname"):
        argv += ["--hostname", str(hostname)]
    argv += _network(host, user_network, aliases)
    argv += _mounts(host)
    argv += _resources(host)
    argv += _ports(host)
    for entry in host.get("ExtraHosts") or []:
        argv += ["--add-host", str(entry)]
    if host.get("Init"):
        argv.append("--init")
    if host.get("ReadonlyRootfs"):
        argv.append("--read-only")
    entry_flag, args = _command(body)
    return [*argv, *entry_flag, image, *args]


def _command(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``--entrypoint`` and the arguments: docker's rules (an Entrypoint given replaces
    the image's and drops its CMD; ``[""]`` clears it)."""
    entrypoint = body.get("Entrypoint")
    cmd = [str(c) for c in body.get("Cmd") or []]
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    if entrypoint is None:
        return [], cmd
    words = [str(w) for w in entrypoint]
    if not words or words == [""]:
        return ["--entrypoint", ""], cmd
    return ["--entrypoint", words[0]], [*words[1:], *cmd]


def _network(
    host: dict[str, Any], user_network: Callable[[str], str | None], aliases: Sequence[str]
) -> list[str]:
    mode = str(host.get("NetworkMode") or "")
    if mode in ("host", "none"):
        return ["--network", mode]
    if mode in _DEFAULT_NETWORKS:
        return []
    joined = user_network(mode)
    if joined == "":
        return []
    if joined is not None:
        argv = ["--network", joined]
        for alias in dict.fromkeys(aliases):
            argv += ["--network-alias", alias]
        return argv
    raise bad_request(
        f"NetworkMode {mode!r}: pybuild serve runs containers on default, host or none "
        "(or a network made with POST /networks/create)"
    )


def _mounts(host: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for bind in host.get("Binds") or []:
        argv += ["-v", _bind(str(bind))]
    for mount in host.get("Mounts") or []:
        argv += _mount(mount)
    for path, options in (host.get("Tmpfs") or {}).items():
        argv += ["--tmpfs", f"{path}:{options}" if options else str(path)]
    return argv


def _bind(spec: str) -> str:
    """``SRC:DST[:opts]``: ``ro`` kept, ``rw`` and SELinux/propagation options dropped."""
    parts = spec.split(":")
    if len(parts) < 2:
        raise bad_request(f"Binds {spec!r}: expected SOURCE:TARGET[:ro]")
    options = parts[2].split(",") if len(parts) > 2 else []
    return f"{parts[0]}:{parts[1]}" + (":ro" if "ro" in options else "")


def _mount(mount: dict[str, Any]) -> list[str]:
    kind, target = mount.get("Type", "volume"), str(mount.get("Target", ""))
    if kind == "tmpfs":
        size = (mount.get("TmpfsOptions") or {}).get("SizeBytes")
        return ["--tmpfs", f"{target}:size={size}" if size else target]
    if kind in ("bind", "volume") and mount.get("Source"):
        suffix = ":ro" if mount.get("ReadOnly") else ""
        return ["-v", f"{mount['Source']}:{target}{suffix}"]
    raise bad_request(f"Mounts: a {kind} mount without a Source is not supported by pybuild")


def _resources(host: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    if memory := host.get("Memory"):
        argv += ["--memory", str(int(memory))]
    if (pids := host.get("PidsLimit")) and int(pids) > 0:
        argv += ["--pids-limit", str(int(pids))]
    if nano := host.get("NanoCpus"):
        argv += ["--cpus", f"{int(nano) / 1e9:g}"]
    return argv


def _ports(host: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for port, bindings in (host.get("PortBindings") or {}).items():
        for binding in bindings or [{}]:
            ip, host_port = binding.get("HostIp") or "", binding.get("HostPort") or ""
            if ip:
                argv += ["-p", f"{ip}:{host_port}:{port}"]
            else:
                argv += ["-p", f"{host_port}:{port}" if host_port else str(port)]
    if host.get("PublishAllPorts"):
        argv.append("-P")
    return argv
