"""What the server keeps between requests: the store root, how to start ``pybuild``,
the containers made through the API and the networks compose asked for.

The store itself (images, container records, volumes) is on disk and shared with the
CLI; the tables here hold what only the API knows (a created container not started
yet, docker's ids and configs, compose's networks) and are lost when the server stops.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.engine.errors import not_found

API_VERSION = "1.41"  # docker 20.10's, what the clients negotiate down to
MIN_API_VERSION = "1.24"
_REPO_PARENT = str(Path(__file__).resolve().parent.parent.parent)


@dataclass
class Container:
    """A container made by ``POST /containers/create``."""

    id: str
    name: str
    image: str
    config: dict[str, Any]  # the create body: Cmd, Env, Labels, HostConfig, ...
    created: str
    image_id: str = ""
    record_id: str = ""  # pybuild's container record, once started
    status: str = "created"  # created | running | exited | removed
    exit_code: int | None = None
    error: str = ""
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    networks: dict[str, list[str]] = field(default_factory=dict)  # name -> aliases
    attachers: int = 0  # clients reading its output by attach (AutoRemove waits for them)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def set(self, **values: Any) -> None:
        """Change fields and wake whoever waits for a state."""
        with self.changed:
            for key, value in values.items():
                setattr(self, key, value)
            self.changed.notify_all()

    @property
    def host_config(self) -> dict[str, Any]:
        value = self.config.get("HostConfig") or {}
        return value if isinstance(value, dict) else {}


@dataclass
class Network:
    """A network made by ``POST /networks/create`` (compose's project network)."""

    id: str
    name: str
    driver: str
    labels: dict[str, str]
    created: str
    pybuild: bool = False  # backed by a pybuild user network (`pybuild network create`)


@dataclass
class Engine:
    """The server's state; every table is guarded by ``lock``."""

    root: Path
    log: Callable[[str], None]
    containers: dict[str, Container] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    stopping: threading.Event = field(default_factory=threading.Event)
    # the pybuild commands running for requests; cancelled when the server stops
    children: set[subprocess.Popen[bytes]] = field(default_factory=set)

    def pybuild(self, *args: str) -> list[str]:
        """The command line of ``pybuild --root ROOT ARGS`` (this checkout's)."""
        return [sys.executable, "-m", "builder.cli", "--root", str(self.root), *args]

    def child_env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, **extra}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_REPO_PARENT, os.environ.get("PYTHONPATH", "")) if p
        )
        env.pop("PYBUILD_DEBUG", None)
        return env


def lookup(engine: Engine, ref: str) -> Container:
    """The container ``ref`` names (id, unique id prefix or name); 404."""
    with engine.lock:
        live = [c for c in engine.containers.values() if c.status != "removed"]
        found = [c for c in live if c.id == ref or c.name == ref.lstrip("/")]
        found = found or [c for c in live if c.id.startswith(ref)]
    if len(found) != 1 or not ref:
        raise not_found(f"No such container: {ref}")
    return found[0]
