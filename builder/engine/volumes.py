"""``/volumes/...``: named volumes, the same ones ``pybuild run -v NAME:/path`` uses
(``<store>/volumes/<name>/_data``); labels are kept beside the data, in
``labels.json``."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from builder.engine.errors import ApiError, bad_request, not_found
from builder.engine.state import Engine
from builder.engine.wire import Reply, Request
from builder.errors import UsageError
from builder.run.container_spec import named_volume
from fstree.tree import remove_tree


def _dir(engine: Engine, name: str) -> Path:
    return engine.root / "volumes" / name


def _doc(engine: Engine, name: str) -> dict[str, Any]:
    home = _dir(engine, name)
    try:
        labels = json.loads((home / "labels.json").read_text())
    except (OSError, ValueError):
        labels = {}
    created = datetime.fromtimestamp(home.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Name": name,
        "Driver": "local",
        "Mountpoint": str(home / "_data"),
        "CreatedAt": created,
        "Labels": labels,
        "Scope": "local",
        "Options": {},
    }


def list_volumes(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    base = engine.root / "volumes"
    names = (
        sorted(p.name for p in base.iterdir() if (p / "_data").is_dir()) if base.is_dir() else []
    )
    reply.json(200, {"Volumes": [_doc(engine, n) for n in names], "Warnings": []})


def create(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    body = request.json_body()
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    name = body.get("Name") or secrets.token_hex(32)
    if (body.get("Driver") or "local") != "local":
        raise bad_request(f"volume driver {body['Driver']!r}: pybuild has the local driver only")
    try:
        named_volume(engine.root, str(name))
    except UsageError as exc:
        raise bad_request(str(exc)) from None
    labels = body.get("Labels") or {}
    if labels and not (_dir(engine, name) / "labels.json").exists():
        tmp = _dir(engine, name) / f"labels.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(labels))
        os.replace(tmp, _dir(engine, name) / "labels.json")
    reply.json(201, _doc(engine, name))


def inspect(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    name = params["name"]
    if "/" in name or not (_dir(engine, name) / "_data").is_dir():
        raise not_found(f"get {name}: no such volume")
    reply.json(200, _doc(engine, name))


def remove(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    name = params["name"]
    if "/" in name or not (_dir(engine, name) / "_data").is_dir():
        raise not_found(f"get {name}: no such volume")
    with engine.lock:
        users = [
            c.name
            for c in engine.containers.values()
            if c.status == "running"
            and any(str(b).split(":")[0] == name for b in c.host_config.get("Binds") or [])
        ]
    if users and not request.flag("force"):
        raise ApiError(409, f"remove {name}: volume is in use - [{', '.join(users)}]")
    remove_tree(_dir(engine, name), ignore_errors=True)
    reply.empty(204)
