"""Containers as docker shows them: ``GET /containers/{id}/json`` and
``GET /containers/json`` (with the ``label``, ``name``, ``id`` and ``status`` filters
compose and the CLI use)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from builder.engine.state import Container, Engine
from builder.engine.wire import Reply, Request
from builder.run.containers import Record


def _state(container: Container, record: Record | None) -> dict[str, Any]:
    running = container.status == "running"
    return {
        "Status": "exited"
        if container.status == "removed"
        else container.status.replace("starting", "created"),
        "Running": running,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": record.init_pid if running and record is not None else 0,
        "ExitCode": container.exit_code or 0,
        "Error": container.error,
        "StartedAt": container.started_at,
        "FinishedAt": container.finished_at,
    }


def _networks(container: Container, record: Record | None) -> dict[str, Any]:
    address = record.address if record is not None and container.status == "running" else ""
    return {
        name: {
            "Aliases": aliases,
            "NetworkID": name,
            "EndpointID": container.id if container.status == "running" else "",
            "IPAddress": address,
            "Gateway": "",
            "IPPrefixLen": 0,
            "MacAddress": "",
        }
        for name, aliases in container.networks.items()
    }


def _mounts(container: Container) -> list[dict[str, Any]]:
    out = []
    for bind in container.host_config.get("Binds") or []:
        source, _, rest = str(bind).partition(":")
        target, _, mode = rest.partition(":")
        named = "/" not in source
        out.append(
            {
                "Type": "volume" if named else "bind",
                "Name": source if named else "",
                "Source": source,
                "Destination": target,
                "Mode": mode,
                "RW": "ro" not in mode.split(","),
                "Propagation": "",
            }
        )
    return out


def inspect_doc(container: Container, record: Record | None) -> dict[str, Any]:
    config = container.config
    host = {"NetworkMode": "default", "AutoRemove": False, "Binds": None, **container.host_config}
    host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    run_config = {
        "Hostname": config.get("Hostname") or container.id[:12],
        "Domainname": "",
        "User": config.get("User") or "",
        "AttachStdin": False,
        "AttachStdout": bool(config.get("AttachStdout")),
        "AttachStderr": bool(config.get("AttachStderr")),
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": config.get("Env") or [],
        "Cmd": config.get("Cmd"),
        "Image": container.image,
        "Volumes": config.get("Volumes"),
        "WorkingDir": config.get("WorkingDir") or "",
        "Entrypoint": config.get("Entrypoint"),
        "Labels": config.get("Labels") or {},
        "ExposedPorts": config.get("ExposedPorts"),
    }
    command = list(record.command) if record is not None else list(config.get("Cmd") or [])
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": _state(container, record),
        "Image": container.image_id,
        "Name": "/" + container.name,
        "RestartCount": 0,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": host,
        "Mounts": _mounts(container),
        "Config": run_config,
        "NetworkSettings": {
            "Ports": {},
            "Networks": _networks(container, record),
            "IPAddress": "",
        },
    }


def _status_line(container: Container) -> str:
    if container.status == "running":
        return "Up"
    if container.status == "exited":
        return f"Exited ({container.exit_code or 0})"
    return "Created"


def _summary(container: Container) -> dict[str, Any]:
    config = container.config
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    created = datetime.fromisoformat(container.created.replace("Z", "+00:00"))
    return {
        "Id": container.id,
        "Names": ["/" + container.name],
        "Image": container.image,
        "ImageID": container.image_id,
        "Command": " ".join(command),
        "Created": int(created.timestamp()),
        "Ports": [],
        "Labels": config.get("Labels") or {},
        "State": container.status.replace("starting", "created"),
        "Status": _status_line(container),
        "HostConfig": {"NetworkMode": container.host_config.get("NetworkMode") or "default"},
        "NetworkSettings": {"Networks": _networks(container, None)},
        "Mounts": _mounts(container),
    }


def _keep(container: Container, filters: dict[str, Any], every: bool) -> bool:
    if container.status == "removed":
        return False
    if not every and container.status != "running" and not filters.get("status"):
        return False
    labels = container.config.get("Labels") or {}
    for want in _values(filters, "label"):
        key, sep, value = want.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    checks: dict[str, Callable[[str], bool]] = {
        "name": lambda v: v.lstrip("/") in container.name,
        "id": container.id.startswith,
        "status": lambda v: v == container.status,
    }
    return all(
        any(check(v) for v in _values(filters, key))
        for key, check in checks.items()
        if _values(filters, key)
    )


def _values(filters: dict[str, Any], key: str) -> list[str]:
    value = filters.get(key)
    if isinstance(value, dict):
        return [k for k, v in value.items() if v]
    return [str(v) for v in value] if isinstance(value, list) else []


def list_containers(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    filters = request.json_arg("filters") or {}
    if not isinstance(filters, dict):
        filters = {}
    every = request.flag("all")
    with engine.lock:
        found = [c for c in engine.containers.values() if _keep(c, filters, every)]
    found.sort(key=lambda c: c.created, reverse=True)
    reply.json(200, [_summary(c) for c in found])
