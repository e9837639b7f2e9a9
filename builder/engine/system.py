"""``/_ping``, ``/version``, ``/info`` and ``/events``: what clients ask before anything
else, to pick an API version and a builder."""

from __future__ import annotations

import os
import platform
import time

from builder.engine.state import API_VERSION, MIN_API_VERSION, Engine
from builder.engine.wire import Reply, Request
from builder.images.store import Storage

ENGINE_VERSION = "20.10.24-pybuild"  # the API docker 20.10 speaks


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def ping(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    """``OK``, with the headers the CLI reads: API version, OS, and the classic builder
    (``Builder-Version: 1``: pybuild speaks no BuildKit session)."""
    reply.raw(
        200,
        b"OK",
        "text/plain; charset=utf-8",
        **{
            "API-Version": API_VERSION,
            "OSType": "linux",
            "Docker-Experimental": "false",
            "Builder-Version": "1",
            "Cache-Control": "no-cache, no-store, must-revalidate",
        },
    )


def version(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    uname = os.uname()
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": uname.release,
        "GitCommit": "pybuild",
        "GoVersion": "python" + platform.python_version(),
        "BuildTime": "",
        "Experimental": "false",
    }
    reply.json(
        200,
        {
            "Platform": {"Name": "pybuild"},
            "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": details}],
            "Version": ENGINE_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "pybuild",
            "GoVersion": "python" + platform.python_version(),
            "Os": "linux",
            "Arch": _arch(),
            "KernelVersion": uname.release,
            "BuildTime": "",
        },
    )


def info(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    with engine.lock:
        states = [c.status for c in engine.containers.values() if c.status != "removed"]
    storage = Storage.open(engine.root)
    try:
        image_count = len({digest for _name, digest in storage.index.tags()})
    finally:
        storage.close()
    reply.json(
        200,
        {
            "ID": "pybuild",
            "Name": os.uname().nodename,
            "ServerVersion": ENGINE_VERSION,
            "OperatingSystem": "pybuild",
            "OSType": "linux",
            "Architecture": platform.machine(),
            "Containers": len(states),
            "ContainersRunning": states.count("running"),
            "ContainersStopped": states.count("exited"),
            "Images": image_count,
            "Driver": "overlay",
            "DockerRootDir": str(engine.root),
            "NCPU": os.cpu_count() or 1,
            "Labels": [],
            "Warnings": [],
        },
    )


def events(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    """An event stream that stays open, with no events, until the client leaves (compose
    follows it while it shows logs); pybuild records no events."""
    reply.stream()
    while not request.client_gone() and not engine.stopping.is_set():
        time.sleep(0.5)
    reply.end()
