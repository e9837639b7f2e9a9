"""What the server keeps between requests: the store root, how to start ``pybuild``,
the containers made through the API and the networks compose asked for.

The store itself (images, container records, volumes) is on disk and shared with the
CLI; the tables here hold what only the API knows (a created container not started
yet, docker's ids and configs, compose's networks). They are kept under
``<store>/engine/`` (one JSON file per container and network, written atomically on
every change), so a restarted server still knows them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
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
    saved_to: Path | None = None  # its file under <store>/engine/containers

    def set(self, **values: Any) -> None:
        """Change fields, save them, and wake whoever waits for a state."""
        with self.changed:
            for key, value in values.items():
                setattr(self, key, value)
            self.save()
            self.changed.notify_all()

    def save(self) -> None:
        if self.saved_to is None:
            return
        if self.status == "removed":
            with contextlib.suppress(FileNotFoundError):
                self.saved_to.unlink()
            return
        doc = {k: getattr(self, k) for k in _CONTAINER_FIELDS}
        write_json(self.saved_to, doc)

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


_CONTAINER_FIELDS = tuple(
    f.name for f in fields(Container) if f.name not in ("attachers", "changed", "saved_to")
)


def write_json(path: Path, doc: object) -> None:
    """``doc`` to ``path`` atomically (temp file, rename), private to the owner."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


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

    @property
    def saved(self) -> Path:
        return self.root / "engine"

    def keep_container(self, container: Container) -> None:
        """Add ``container`` to the table and save it."""
        container.saved_to = self.saved / "containers" / f"{container.id}.json"
        with self.lock:
            self.containers[container.id] = container
        container.save()

    def keep_network(self, network: Network) -> None:
        with self.lock:
            self.networks[network.id] = network
        write_json(self.saved / "networks" / f"{network.id}.json", asdict(network))

    def forget_network(self, network: Network) -> None:
        with self.lock:
            self.networks.pop(network.id, None)
        with contextlib.suppress(FileNotFoundError):
            (self.saved / "networks" / f"{network.id}.json").unlink()

    def load_saved(self) -> list[Container]:
        """The saved tables back in memory (at start); the containers loaded."""
        loaded = []
        for path in sorted((self.saved / "containers").glob("*.json")):
            doc = _read_json(path)
            if doc is None or set(doc) != set(_CONTAINER_FIELDS):
                continue
            container = Container(**doc)
            container.saved_to = path
            loaded.append(container)
        for path in sorted((self.saved / "networks").glob("*.json")):
            doc = _read_json(path)
            with contextlib.suppress(TypeError):
                if doc is not None:
                    network = Network(**doc)
                    self.networks[network.id] = network
        with self.lock:
            self.containers.update((c.id, c) for c in loaded)
        return loaded

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
