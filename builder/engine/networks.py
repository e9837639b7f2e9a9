"""``/networks/...``: the networks compose makes for a project.

A network made here is a pybuild user network (``pybuild network create``, a child):
its containers reach one another by name and alias (``/etc/hosts``), on top of their own
default network. Where one cannot be made (no ``ip``, no CAP_NET_ADMIN) the network is a
name only, with a warning: its containers run on their default network and do not
reach one another by name. ``bridge``, ``host`` and ``none`` always exist.
"""

from __future__ import annotations

import secrets
from typing import Any

from builder.engine import children
from builder.engine.errors import ApiError, bad_request, not_found
from builder.engine.state import Container, Engine, Network, lookup
from builder.engine.wire import Reply, Request
from builder.run import usernets

_BUILTIN = {"bridge": "bridge", "host": "host", "none": "null"}


def _now() -> str:
    from builder.engine.containers import now

    return now()


def _find(engine: Engine, ref: str) -> Network | None:
    with engine.lock:
        for network in engine.networks.values():
            if ref in (network.name, network.id) or (len(ref) >= 6 and network.id.startswith(ref)):
                return network
    if ref in _BUILTIN:
        return Network(ref, ref, _BUILTIN[ref], {}, "0001-01-01T00:00:00Z")
    return None


def _doc(engine: Engine, network: Network) -> dict[str, Any]:
    with engine.lock:
        members = {
            c.id: {
                "Name": c.name,
                "EndpointID": c.id,
                "MacAddress": "",
                "IPv4Address": "",
                "IPv6Address": "",
            }
            for c in engine.containers.values()
            if network.name in c.networks and c.status == "running"
        }
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": _ipam(engine, network)},
        "Internal": False,
        "Attachable": True,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": members,
        "Options": {},
        "Labels": network.labels,
    }


def _ipam(engine: Engine, network: Network) -> list[dict[str, str]]:
    record = usernets.load(engine.root, network.name) if network.pybuild else None
    return [{"Subnet": record.subnet, "Gateway": record.gateway}] if record else []


def list_networks(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    with engine.lock:
        made = list(engine.networks.values())
    every = [n for n in (_find(engine, b) for b in _BUILTIN) if n is not None] + made
    filters = request.json_arg("filters") or {}
    names = filters.get("name") if isinstance(filters, dict) else None
    if names:
        wanted = names if isinstance(names, list) else list(names)
        every = [n for n in every if any(w in n.name for w in wanted)]
    reply.json(200, [_doc(engine, n) for n in every])


def create(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    body = request.json_body()
    name = body.get("Name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise bad_request("Name is required")
    if _find(engine, name) is not None:
        raise ApiError(409, f"network with name {name} already exists")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise bad_request(f"network driver {driver!r}: pybuild serve makes bridge networks only")
    made = children.run(engine, ["network", "create", name])
    warning = ""
    if made.code != 0:
        warning = (
            f"network {name} is a name only: its containers do not reach one another by "
            f"name ({children.error_message(made)})"
        )
        engine.log(f"warning: {warning}")
    network_id = made.lines[-1].strip() if made.code == 0 and made.lines else ""
    network = Network(
        network_id or secrets.token_hex(32),
        name,
        driver,
        body.get("Labels") or {},
        _now(),
        pybuild=made.code == 0,
    )
    engine.keep_network(network)
    reply.json(201, {"Id": network.id, "Warning": warning})


def inspect(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    network = _find(engine, params["id"])
    if network is None:
        raise not_found(f"network {params['id']} not found")
    reply.json(200, _doc(engine, network))


def remove(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    network = _find(engine, params["id"])
    if network is None or network.name in _BUILTIN:
        raise not_found(f"network {params['id']} not found")
    if network.pybuild:
        gone = children.run(engine, ["network", "rm", network.name])
        if gone.code != 0:
            raise ApiError(409, children.error_message(gone))
    engine.forget_network(network)
    reply.empty(204)


def connect(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    network, container, body = _membership(engine, request, params)
    aliases = (body.get("EndpointConfig") or {}).get("Aliases") or []
    container.set(networks={**container.networks, network.name: [container.id[:12], *aliases]})
    reply.empty(200)


def disconnect(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    network, container, _body = _membership(engine, request, params)
    left = {k: v for k, v in container.networks.items() if k != network.name}
    container.set(networks=left)
    reply.empty(200)


def _membership(
    engine: Engine, request: Request, params: dict[str, str]
) -> tuple[Network, Container, dict[str, Any]]:
    """The network, the container and the body of a connect or disconnect request."""
    network = _find(engine, params["id"])
    if network is None:
        raise not_found(f"network {params['id']} not found")
    body = request.json_body()
    return network, lookup(engine, str(body.get("Container", ""))), body
