"""A container's network: what ``--network`` asks for, made before the container starts
and removed after it ends.

``default`` is a private network namespace with outbound access through pasta
(:mod:`runtime.netns`), in the container's own scratch dir, with its published ports;
``host`` and ``none`` need nothing made. A container on a user network
(:mod:`builder.run.usernets`) has the default network too, plus a link to its network's
bridge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.netns import PortForward, PrivateNetwork, create
from runtime.spec import ContainerSpec

if TYPE_CHECKING:
    from builder.run.usernets import Endpoint


@contextmanager
def attached(
    spec: ContainerSpec,
    directory: Path,
    ports: Sequence[PortForward] = (),
    endpoint: Endpoint | None = None,
) -> Iterator[ContainerSpec]:
    """``spec`` joined to its network while the block runs (and to ``endpoint``'s user
    network, when given)."""
    if spec.network != "default":
        yield spec
        return
    network = create(directory, "netns", ports)
    try:
        if endpoint is None:
            yield join(spec, network)
        else:
            from builder.run.usernets import attached_to

            with attached_to(endpoint, join(spec, network), directory) as on_user:
                yield on_user
    finally:
        network.close()


def join(spec: ContainerSpec, network: PrivateNetwork) -> ContainerSpec:
    return dataclasses.replace(
        spec,
        network="netns",
        netns=str(network.path),
        resolv_conf=spec.resolv_conf or network.resolv_conf,
    )


def address_of(spec: ContainerSpec) -> str:
    """The container's IPv4 address: on the default network, the host's own (pasta copies
    the address of the host's outbound interface), found as the source address the host
    would use for a remote destination (a UDP connect sends nothing); "" elsewhere."""
    if spec.network != "netns":
        return ""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("203.0.113.1", 9))  # TEST-NET-3: any non-local address will do
        return str(sock.getsockname()[0])
    return ""
