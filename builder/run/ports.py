"""``pybuild run -p/-P``: published ports, as docker reads and shows them.

``-p [IP:][HOST:]CONTAINER[/tcp|/udp]``: ``HOST`` may be a range as long as
``CONTAINER``'s; no ``HOST`` (or ``-P``, for each EXPOSE of the image) takes a free port
of the host, which ``pybuild port`` and ``pybuild ps`` show. No ``IP`` is every address
(docker's 0.0.0.0); ``127.0.0.1:`` binds the host's loopback only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence

from builder.errors import UsageError
from runtime.netns import PortForward

_HINT = "e.g. -p 8080:80, -p 127.0.0.1:8080:80/tcp, -p 53:53/udp or -p 80"


def parse_publish(text: str) -> list[PortForward]:
    """One ``-p`` value; host port 0 means "pick a free one" (:func:`allocate`)."""
    rest, _, protocol = text.partition("/")
    protocol = protocol.lower() or "tcp"
    if protocol not in ("tcp", "udp"):
        raise UsageError(f"-p {text!r}: protocol {protocol!r} is not tcp or udp", hint=_HINT)
    host_ip, host_ports, container_ports = _split(text, rest)
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip.strip("[]")))
        except ValueError:
            raise UsageError(f"-p {text!r}: {host_ip!r} is not an IP address", hint=_HINT) from None
    inside = _port_range(text, container_ports)
    outside = _port_range(text, host_ports) if host_ports else [0] * len(inside)
    if len(outside) != len(inside):
        if len(inside) != 1:
            raise UsageError(f"-p {text!r}: the two port ranges differ in length", hint=_HINT)
        inside = inside * len(outside)  # docker: a host range to one container port
        outside = outside[:1]
        inside = inside[:1]
    return [
        PortForward(host_port=h, container_port=c, protocol=protocol, host_ip=host_ip)
        for h, c in zip(outside, inside, strict=True)
    ]


def exposed_forwards(image_ports: Iterable[str]) -> list[PortForward]:
    """``-P``: each port the image EXPOSEs (``80/tcp``), on a free host port."""
    found = []
    for item in image_ports:
        number, _, protocol = item.partition("/")
        if number.isdigit():
            found.append(PortForward(0, int(number), (protocol or "tcp").lower()))
    return found


def allocate(ports: Sequence[PortForward]) -> tuple[PortForward, ...]:
    """Give every port without a host port a free one (the kernel's pick for the same
    address and protocol), and refuse one host port published twice."""
    chosen = []
    for port in ports:
        if port.host_port == 0:
            port = PortForward(_free_port(port), port.container_port, port.protocol, port.host_ip)
        chosen.append(port)
    seen: set[tuple[str, int, str]] = set()
    for port in chosen:
        key = (port.host_ip, port.host_port, port.protocol)
        if key in seen:
            raise UsageError(
                f"-p: host port {port.host_port}/{port.protocol} is published twice",
                hint="give each published port its own host port",
            )
        seen.add(key)
    return tuple(chosen)


def describe(port: PortForward) -> str:
    """docker ps's form: ``0.0.0.0:32768->80/tcp``."""
    return f"{port.host_ip or '0.0.0.0'}:{port.host_port}->{port.container_port}/{port.protocol}"


def port_lines(ports: Sequence[PortForward], wanted: str | None = None) -> list[str]:
    """``pybuild port``'s lines (``80/tcp -> 0.0.0.0:32768``); ``wanted`` is
    ``PORT[/PROTO]`` to show one."""
    lines = []
    for port in ports:
        inside = f"{port.container_port}/{port.protocol}"
        if wanted is not None and wanted not in (inside, str(port.container_port)):
            continue
        lines.append(f"{inside} -> {port.host_ip or '0.0.0.0'}:{port.host_port}")
    return lines


def to_json(ports: Sequence[PortForward]) -> list[dict[str, object]]:
    return [
        {"host_ip": p.host_ip, "host_port": p.host_port, "container_port": p.container_port,
         "protocol": p.protocol}
        for p in ports
    ]  # fmt: skip


def from_json(items: object) -> tuple[PortForward, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(
        PortForward(
            host_port=int(item["host_port"]),
            container_port=int(item["container_port"]),
            protocol=str(item["protocol"]),
            host_ip=str(item["host_ip"]),
        )
        for item in items
        if isinstance(item, dict)
    )


def _split(text: str, rest: str) -> tuple[str, str, str]:
    """``[IP:][HOST:]CONTAINER`` into its three parts (an IPv6 address in brackets)."""
    host_ip = ""
    if rest.startswith("["):
        end = rest.find("]:")
        if end < 0:
            raise UsageError(f"-p {text!r}: expected [IPv6]:HOST:CONTAINER", hint=_HINT)
        host_ip, rest = rest[1:end], rest[end + 2 :]
        parts = rest.split(":")
        if len(parts) != 2:
            raise UsageError(f"-p {text!r}: expected [IPv6]:HOST:CONTAINER", hint=_HINT)
        return host_ip, parts[0], parts[1]
    parts = rest.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise UsageError(f"-p {text!r}: expected [IP:][HOST:]CONTAINER[/PROTO]", hint=_HINT)


def _port_range(text: str, item: str) -> list[int]:
    low, sep, high = item.partition("-")
    try:
        first = int(low)
        last = int(high) if sep else first
    except ValueError:
        raise UsageError(f"-p {text!r}: {item!r} is not a port or range", hint=_HINT) from None
    if not (1 <= first <= last <= 65535):
        raise UsageError(f"-p {text!r}: ports go from 1 to 65535", hint=_HINT)
    return list(range(first, last + 1))


def _free_port(port: PortForward) -> int:
    family = socket.AF_INET6 if ":" in port.host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if port.protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.bind((port.host_ip or "", 0))
        return int(sock.getsockname()[1])
