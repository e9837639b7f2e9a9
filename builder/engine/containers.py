"""``/containers/...``: create, start, wait, stop, kill and remove.

A created container is a config in the server's table; ``start`` runs it as ``pybuild
run -d`` (a child; started again after it exited, it is a fresh run of the same config),
so it gets the same runner, monitor, record, log and lease as the CLI's detached
containers (``pybuild ps -a``, ``logs``, ``stop`` see it). A watcher
thread follows its record to the exit, keeps the exit code for ``wait``, and removes
the container when ``AutoRemove`` (``docker run --rm``) asks for it, once every attached
client has read its output.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import signal
import threading
import time
from datetime import UTC, datetime

from builder.engine import children, images, runflags
from builder.engine.containerview import inspect_doc, list_containers
from builder.engine.errors import ApiError, bad_request
from builder.engine.state import Container, Engine, lookup
from builder.engine.streams import attach, logs
from builder.engine.wire import Reply, Request
from builder.frontend.signals import parse_signal
from builder.run import containers as records
from fstree.tree import remove_tree

_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_POLL = 0.1
ATTACH_WAIT = 30.0  # how long an AutoRemove waits for attached clients to read

__all__ = ["attach", "create", "inspect", "kill", "list_containers", "logs", "lookup", "remove"]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    body = request.json_body()
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    runflags.check_create(body)
    container_id = secrets.token_hex(32)
    name = request.arg("name").lstrip("/") or _generated_name(container_id)
    if not _NAME.fullmatch(name):
        raise bad_request(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    with images.opened(engine) as storage:
        image = images.find(storage, body["Image"])
    with engine.lock:
        taken = [c for c in engine.containers.values() if c.name == name and c.status != "removed"]
        if taken:
            raise ApiError(
                409,
                f'Conflict. The container name "/{name}" is already in use by container '
                f'"{taken[0].id}". You have to remove (or rename) that container to be able '
                "to reuse that name.",
            )
        container = Container(
            container_id, name, body["Image"], body, now(), image_id=str(image.config_digest)
        )
        endpoints = ((body.get("NetworkingConfig") or {}).get("EndpointsConfig")) or {}
        mode = container.host_config.get("NetworkMode") or "default"
        for network in {mode, *endpoints} - {"host", "none"}:
            aliases = (endpoints.get(network) or {}).get("Aliases") or []
            container.networks[network] = [container_id[:12], *aliases]
        engine.keep_container(container)
    reply.json(201, {"Id": container_id, "Warnings": []})


def _generated_name(container_id: str) -> str:
    return f"pybuild_{container_id[:12]}"


def start(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    container = lookup(engine, params["id"])
    with container.changed:
        if container.status == "running":
            reply.empty(304)
            return
        if container.status not in ("created", "exited"):
            raise ApiError(409, f"container {container.name} is {container.status}")
        previous, container.status = container.record_id, "starting"
    if previous:  # started again (compose up on a stopped project): a fresh run
        remove_tree(records.containers_dir(engine.root) / previous, ignore_errors=True)
        container.set(record_id="", exit_code=None, error="")

    def user_network(mode: str) -> str | None:
        with engine.lock:
            for network in engine.networks.values():
                if mode in (network.id, network.name):
                    return network.name if network.pybuild else ""
        return None

    mode = str(container.host_config.get("NetworkMode") or "")
    aliases = [a for a in container.networks.get(mode, []) if a != container.id[:12]]
    try:
        argv = runflags.run_argv(
            container.config, container.name, container.image, user_network, aliases
        )
        finished = children.run(engine, argv)
    except BaseException:
        container.set(status="created")
        raise
    record_id = finished.lines[-1].strip() if finished.lines else ""
    if finished.code != 0 or not re.fullmatch(r"[0-9a-f]{64}", record_id):
        message = children.error_message(finished)
        container.set(status="exited", exit_code=125, error=message, finished_at=now())
        raise ApiError(400 if finished.code == 2 else 500, message)
    container.set(record_id=record_id, status="running", started_at=now())
    threading.Thread(target=_watch, args=(engine, container), daemon=True).start()
    reply.empty(204)


def _watch(engine: Engine, container: Container) -> None:
    """Follow the record to the exit; then AutoRemove, once attached clients are done."""
    while True:
        record = records.load(engine.root, container.record_id)
        if record is None or record.status == "exited":
            break
        time.sleep(_POLL)
    code = record.exit_code if record is not None and record.exit_code is not None else 137
    error = record.error if record is not None else "the container record went away"
    container.set(status="exited", exit_code=code, error=error, finished_at=now())
    if container.host_config.get("AutoRemove"):
        with container.changed:
            container.changed.wait_for(lambda: container.attachers == 0, ATTACH_WAIT)
        _remove(engine, container)


def restore(engine: Engine) -> None:
    """The saved containers back (server start): a running one's watcher again; one whose
    record says it exited (or that has none) as exited."""
    for container in engine.load_saved():
        if container.status not in ("running", "starting"):
            continue
        record = records.load(engine.root, container.record_id) if container.record_id else None
        if record is not None and record.status == "running":
            threading.Thread(target=_watch, args=(engine, container), daemon=True).start()
        else:
            code = record.exit_code if record is not None else None
            error = "" if record is not None else "the server stopped before it started"
            container.set(status="exited", exit_code=137 if code is None else code, error=error)


def _remove(engine: Engine, container: Container) -> None:
    if container.record_id:
        remove_tree(records.containers_dir(engine.root) / container.record_id, ignore_errors=True)
    with engine.lock:
        engine.containers.pop(container.id, None)
    container.set(status="removed")


def wait(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    """The exit code, once the condition holds: ``not-running`` (default),
    ``next-exit`` or ``removed``. The head goes first: clients wait for it before they
    start the container."""
    container = lookup(engine, params["id"])
    condition = request.arg("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise bad_request(f"condition {condition!r}: expected not-running, next-exit or removed")
    done = {
        "not-running": lambda: container.status in ("created", "exited", "removed"),
        "next-exit": lambda: container.status in ("exited", "removed"),
        "removed": lambda: container.status == "removed",
    }[condition]
    reply.stream()
    with container.changed:
        while not container.changed.wait_for(done, 0.5):
            if request.client_gone() or engine.stopping.is_set():
                return
    error = {"Message": container.error} if container.error else None
    reply.line({"StatusCode": container.exit_code or 0, "Error": error})
    reply.end()


def stop(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    container = lookup(engine, params["id"])
    if container.status != "running":
        reply.empty(304)
        return
    timeout = float(request.arg("t") or 10)
    _stop(engine, container, timeout)
    reply.empty(204)


def _stop(engine: Engine, container: Container, timeout: float) -> None:
    record = records.load(engine.root, container.record_id)
    if record is not None:
        records.stop_container(engine.root, record, timeout)
    with container.changed:
        container.changed.wait_for(lambda: container.status != "running", 5)


def kill(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    container = lookup(engine, params["id"])
    name = request.arg("signal") or "SIGKILL"
    number = parse_signal(name)
    if number is None:
        raise bad_request(f"Invalid signal: {name}")
    record = records.load(engine.root, container.record_id) if container.record_id else None
    if container.status != "running" or record is None:
        raise ApiError(409, f"Container {container.id} is not running")
    records.signal_container(record, number)
    if number == signal.SIGKILL:
        with container.changed:
            container.changed.wait_for(lambda: container.status != "running", 5)
    reply.empty(204)


def remove(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    container = lookup(engine, params["id"])
    if container.status in ("running", "starting"):
        if not request.flag("force"):
            raise ApiError(
                409,
                f"You cannot remove a running container {container.id}. Stop the container "
                "before attempting removal or force remove",
            )
        _stop(engine, container, 0)
    with container.changed:
        container.changed.wait_for(lambda: container.status != "running", 5)
    _remove(engine, container)
    reply.empty(204)


def inspect(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    container = lookup(engine, params["id"])
    record = None
    if container.record_id:
        with contextlib.suppress(OSError):
            record = records.load(engine.root, container.record_id)
    reply.json(200, inspect_doc(container, record))
