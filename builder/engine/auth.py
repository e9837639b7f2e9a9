"""``docker login`` (``POST /auth``), and the registry credentials of a request's headers,
handed to a ``pybuild`` child as a docker config dir of its own (``DOCKER_CONFIG``),
removed when the request ends.

``X-Registry-Config`` (build): base64url JSON ``{registry: {username, password}}``;
``X-Registry-Auth`` (push, pull): base64url JSON ``{username, password, serveraddress}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from builder.engine.errors import ApiError, bad_request
from builder.engine.state import Engine
from builder.engine.wire import Reply, Request


def _decode(value: str, header: str) -> Any:
    padded = value.strip() + "=" * (-len(value.strip()) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        raise bad_request(f"{header}: not base64url JSON") from None


def _registry(server: str) -> str:
    host = server.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io", "") else host


def _auths(request: Request, default_registry: str) -> dict[str, dict[str, str]]:
    auths: dict[str, dict[str, str]] = {}
    if config := request.headers.get("x-registry-config"):
        doc = _decode(config, "X-Registry-Config")
        for server, entry in doc.items() if isinstance(doc, dict) else ():
            if isinstance(entry, dict) and entry.get("username"):
                auths[_registry(server)] = _entry(entry)
    if single := request.headers.get("x-registry-auth"):
        entry = _decode(single, "X-Registry-Auth")
        if isinstance(entry, dict) and entry.get("username"):
            server = str(entry.get("serveraddress") or default_registry)
            auths[_registry(server)] = _entry(entry)
    return auths


def _entry(entry: dict[str, Any]) -> dict[str, str]:
    pair = f"{entry.get('username', '')}:{entry.get('password', '')}"
    return {"auth": base64.b64encode(pair.encode()).decode()}


@contextmanager
def docker_config(
    request: Request, default_registry: str = "docker.io"
) -> Iterator[dict[str, str]]:
    """The environment a child needs to see the request's credentials: ``DOCKER_CONFIG``
    pointing at a private temp dir, or nothing when the request carries none."""
    auths = _auths(request, default_registry)
    if not auths:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="pybuild-auth-") as tmp:
        path = os.path.join(tmp, "config.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"auths": auths}, out)
        yield {"DOCKER_CONFIG": tmp}


def login(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    """``POST /auth`` (``docker login``): the credentials checked against the registry
    (``GET /v2/``), as the engine does; nothing is stored here: the client keeps them
    and sends them with each push, pull or build."""
    from cache.distribution.auth import Credentials
    from cache.distribution.client import RegistryClient
    from cache.distribution.reference import Reference
    from cache.errors import CacheError

    body = request.json_body()
    if not isinstance(body, dict) or not body.get("username"):
        raise bad_request("username and password are required")
    registry = _registry(str(body.get("serveraddress") or "docker.io"))
    creds = Credentials(str(body["username"]), str(body.get("password", "")))
    probe = Reference(registry, "library/login-check")
    try:
        with RegistryClient(probe, credentials=creds, scope="") as client:
            client.ping()
    except CacheError as exc:
        raise ApiError(401, f"login to {registry} failed: {exc.message}") from None
    reply.json(200, {"Status": "Login Succeeded", "IdentityToken": ""})
