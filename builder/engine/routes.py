"""Which endpoint answers a request: docker's path patterns, after the ``/v1.xx``
prefix is taken off, to the functions of the endpoint modules."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from builder.engine import (
    auth,
    build,
    containers,
    images,
    networks,
    system,
    transfers,
    volumes,
)
from builder.engine.errors import ApiError
from builder.engine.state import API_VERSION, MIN_API_VERSION, Engine
from builder.engine.wire import Reply, Request

Endpoint = Callable[[Engine, Request, Reply, dict[str, str]], None]

_NAME = r"(?P<name>.+)"  # image names have slashes and colons
_ID = r"(?P<id>[^/]+)"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: Endpoint


def _r(method: str, path: str, endpoint: Endpoint) -> Route:
    return Route(method, re.compile(path + r"/?"), endpoint)


ROUTES: tuple[Route, ...] = (
    _r("GET", "/_ping", system.ping),
    _r("HEAD", "/_ping", system.ping),
    _r("GET", "/version", system.version),
    _r("GET", "/info", system.info),
    _r("GET", "/events", system.events),
    _r("POST", "/auth", auth.login),
    _r("POST", "/build", build.build),
    _r("POST", "/build/prune", build.prune),
    _r("POST", "/session", build.session),
    _r("GET", "/images/json", images.list_images),
    _r("POST", "/images/create", transfers.pull),
    _r("POST", "/images/load", transfers.load),
    _r("GET", "/images/get", transfers.save_many),
    _r("GET", f"/images/{_NAME}/json", images.inspect),
    _r("GET", f"/images/{_NAME}/history", images.history),
    _r("GET", f"/images/{_NAME}/get", transfers.save_one),
    _r("POST", f"/images/{_NAME}/tag", images.tag),
    _r("POST", f"/images/{_NAME}/push", transfers.push),
    _r("DELETE", f"/images/{_NAME}", images.remove),
    _r("GET", "/containers/json", containers.list_containers),
    _r("POST", "/containers/create", containers.create),
    _r("GET", f"/containers/{_ID}/json", containers.inspect),
    _r("POST", f"/containers/{_ID}/start", containers.start),
    _r("POST", f"/containers/{_ID}/wait", containers.wait),
    _r("POST", f"/containers/{_ID}/stop", containers.stop),
    _r("POST", f"/containers/{_ID}/kill", containers.kill),
    _r("POST", f"/containers/{_ID}/attach", containers.attach),
    _r("GET", f"/containers/{_ID}/logs", containers.logs),
    _r("DELETE", f"/containers/{_ID}", containers.remove),
    _r("GET", "/networks", networks.list_networks),
    _r("POST", "/networks/create", networks.create),
    _r("GET", f"/networks/{_ID}", networks.inspect),
    _r("DELETE", f"/networks/{_ID}", networks.remove),
    _r("POST", f"/networks/{_ID}/connect", networks.connect),
    _r("POST", f"/networks/{_ID}/disconnect", networks.disconnect),
    _r("GET", "/volumes", volumes.list_volumes),
    _r("POST", "/volumes/create", volumes.create),
    _r("GET", f"/volumes/{_NAME}", volumes.inspect),
    _r("DELETE", f"/volumes/{_NAME}", volumes.remove),
)

# The engine's other endpoint groups: asked for, they are "not implemented" (501), not
# "not found", so the client says so rather than suggesting a typo.
_DOCKER_GROUPS = (
    "containers", "images", "networks", "volumes", "exec", "swarm", "services", "nodes",
    "tasks", "secrets", "configs", "plugins", "system", "distribution", "session", "build",
    "auth", "commit", "info", "events", "grpc",
)  # fmt: skip

_PREFIX = re.compile(r"/v(\d+)\.(\d+)(/.*)")


def strip_version(path: str) -> str:
    """``path`` without its ``/v1.xx`` prefix; ApiError 400 for a version we do not
    speak (docker's message)."""
    found = _PREFIX.fullmatch(path)
    if found is None:
        return path
    asked = (int(found[1]), int(found[2]))
    if asked > _version(API_VERSION):
        raise ApiError(
            400,
            f"client version {found[1]}.{found[2]} is too new. Maximum supported API "
            f"version is {API_VERSION}",
        )
    if asked < _version(MIN_API_VERSION):
        raise ApiError(
            400,
            f"client version {found[1]}.{found[2]} is too old. Minimum supported API "
            f"version is {MIN_API_VERSION}, please upgrade your client to a newer version",
        )
    return found[3]


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


def find(method: str, path: str) -> tuple[Endpoint, dict[str, str]]:
    """The endpoint for ``method path`` and its path parameters; ApiError 404 or 501."""
    allowed = False
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return route.endpoint, found.groupdict()
        allowed = True
    group = path.strip("/").split("/")[0]
    if allowed or group in _DOCKER_GROUPS:
        raise ApiError(501, f"{method} {path} is not implemented by pybuild")
    raise ApiError(404, f"page not found: {method} {path} (not an endpoint pybuild serves)")
