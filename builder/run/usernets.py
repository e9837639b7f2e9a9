"""User-defined networks (``pybuild network create``, ``run --network NAME``): records in
the store, subnets and addresses, membership and name resolution.

A network is ``<store>/networks/NAME.json`` (written atomically), a /24 from
:data:`POOL` unless ``--subnet`` names one, and a bridge in a namespace kept by a holder
process (:mod:`runtime.netbridge`), started at ``create`` and again by ``run`` if it is
gone (e.g. after a reboot), in both cases before the CLI enters its private mount
namespace, so the holder pins none of its mounts. Rootless, the holder owns a user
namespace as well, which the CLI of ``run`` then joins instead of making its own (see
:mod:`runtime.netbridge`); records and holders are the user's, under the user's store.
A container keeps its private namespace with pasta (outbound access, ``-p``) and gets a
second interface on the bridge with the next free address; other networks' subnets are
unreachable routes inside it. No NAT and no firewall rule on the host: the bridges are
in no namespace the host routes to.

Names resolve through each member's /etc/hosts, a file of ours bound into the container
and rewritten in place (same inode, so the bind stays valid) whenever a member joins or
leaves: no resolver process to keep alive per network, and every libc (glibc, musl,
busybox) reads /etc/hosts at each lookup. The price: a container's own edits of
/etc/hosts are overwritten by the next change.

One lock (``<store>/networks/.lock``, fcntl) serialises create, rm, join and leave, so
two containers never get one address and a network is never removed under a joining
container. A member is owned by the process that joined it (the CLI of a foreground run,
the monitor of a detached one); a member whose process is gone is dropped at the next
locked change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from builder.errors import UsageError
from cache.storeroot import prepare_root
from runtime import netbridge, userns
from runtime.spec import BindMount, ContainerSpec

POOL = IPv4Network("10.89.0.0/16")
BUILTIN = ("default", "host", "none")
RESERVED = (*BUILTIN, "netns", "bridge")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Member:
    """A container on a network."""

    container_id: str
    name: str
    aliases: tuple[str, ...]
    address: str
    link: str  # its veth end in the holder's namespace
    hostname: str
    hosts_path: str  # its /etc/hosts on the host ("" = a user mount, not ours to write)
    base_hosts: str  # localhost, its hostname, --add-host
    pid: int  # the process that joined it; its end ends the membership
    pid_start: int


@dataclass(frozen=True)
class Network:
    name: str
    id: str
    subnet: str
    gateway: str
    created: str
    holder_pid: int = 0
    holder_start: int = 0
    members: tuple[Member, ...] = ()

    @property
    def holder(self) -> netbridge.Holder:
        return netbridge.Holder(self.holder_pid, self.holder_start)


@dataclass(frozen=True)
class Endpoint:
    """What joins: a container, by id, name and aliases, on the network ``network``."""

    root: Path
    network: str
    container_id: str
    name: str
    aliases: tuple[str, ...] = ()


def is_user_network(name: str) -> bool:
    return name not in BUILTIN


def check_name(name: str) -> None:
    if name in RESERVED:
        raise UsageError(
            f"network name {name!r} is reserved",
            hint=f"{', '.join(RESERVED)} are not names for a user network: choose another",
        )
    if not _NAME.match(name):
        raise UsageError(
            f"invalid network name {name!r}",
            hint="use letters, digits, '_', '.' and '-' (at most 63), starting with a "
            "letter or digit",
        )


def check_alias(alias: str) -> None:
    """A name or alias that /etc/hosts can carry."""
    if not _NAME.match(alias):
        raise UsageError(
            f"--network-alias {alias!r}: invalid name",
            hint="use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )


def parse_subnet(text: str) -> IPv4Network:
    try:
        subnet = IPv4Network(text, strict=True)
    except ValueError:
        raise UsageError(
            f"--subnet {text!r}: expected an IPv4 network address and prefix",
            hint="e.g. 10.89.7.0/24 (the host part all zeros)",
        ) from None
    if not 8 <= subnet.prefixlen <= 29:
        raise UsageError(
            f"--subnet {text!r}: the prefix must be /8 to /29",
            hint="a network needs a gateway and room for containers, e.g. /24",
        )
    return subnet


def allocate_subnet(
    taken: Sequence[IPv4Network], avoid: Sequence[IPv4Network], pool: IPv4Network = POOL
) -> IPv4Network:
    """The first /24 of ``pool`` overlapping neither ``taken`` (other networks) nor
    ``avoid`` (the host's routes)."""
    for subnet in pool.subnets(new_prefix=24):
        if not any(subnet.overlaps(other) for other in (*taken, *avoid)):
            return subnet
    raise UsageError(
        f"no free /24 left in {pool} for a new network",
        hint="remove networks no longer used (`pybuild network rm`) or give --subnet",
    )


def next_address(subnet: IPv4Network, used: Sequence[str]) -> IPv4Address:
    """The first address after the gateway (the subnet's first) that no member has."""
    taken = {IPv4Address(a) for a in used}
    hosts = subnet.hosts()
    next(hosts)  # the gateway
    for address in hosts:
        if address not in taken:
            return address
    raise UsageError(f"network subnet {subnet} is full", hint="create a larger --subnet")


def hosts_text(me: Member, members: Sequence[Member]) -> str:
    """``me``'s /etc/hosts: its own lines, its address with its hostname, name and aliases,
    then every other member's address with its name and aliases."""
    lines = [me.base_hosts.rstrip("\n"), "# pybuild network members"]
    lines.append("\t".join([me.address, " ".join(_names(me, me.hostname))]))
    for other in members:
        if other.container_id != me.container_id:
            lines.append("\t".join([other.address, " ".join(_names(other, ""))]))
    return "\n".join(lines) + "\n"


def _names(member: Member, hostname: str) -> list[str]:
    names = [hostname, member.name, *member.aliases]
    return list(dict.fromkeys(n for n in names if n))


def unreachable_routes(own: IPv4Network, others: Sequence[IPv4Network]) -> list[IPv4Network]:
    """Routes that make other networks fail at once inside a member of ``own``: the pool
    and other networks' subnets; a supernet of its own is fine (its own route is more
    specific), none equal to or inside it."""
    return [
        net
        for net in dict.fromkeys([POOL, *others])
        if not net.overlaps(own) or (net.supernet_of(own) and net != own)
    ]


# The store


def networks_dir(root: Path) -> Path:
    return root / "networks"


def load(root: Path, name: str) -> Network | None:
    path = networks_dir(root) / f"{name}.json"
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        members = tuple(
            Member(**{**m, "aliases": tuple(m["aliases"])}) for m in body.pop("members", [])
        )
        return Network(**body, members=members)
    except (OSError, ValueError, TypeError):
        return None


def every(root: Path) -> list[Network]:
    base = networks_dir(root)
    names = sorted(p.stem for p in base.glob("*.json")) if base.is_dir() else []
    return [n for n in (load(root, name) for name in names) if n is not None]


def find(root: Path, name: str) -> Network:
    network = load(root, name)
    if network is None:
        raise UsageError(
            f"network {name!r} does not exist",
            hint=f"create it with `pybuild network create {name}`; `pybuild network ls` "
            "lists networks",
        )
    return network


def live_members(network: Network) -> tuple[Member, ...]:
    return tuple(m for m in network.members if netbridge.start_time(m.pid) == m.pid_start)


def _save(root: Path, network: Network) -> None:
    path = networks_dir(root) / f"{network.name}.json"
    tmp = path.with_name(f".{network.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(asdict(network), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    prepare_root(root)  # ours and private (made so if new), as the store's other files
    base = networks_dir(root)
    base.mkdir(exist_ok=True)
    fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _need_tools() -> None:
    missing = netbridge.missing_tool()
    if missing:
        raise UsageError(
            f"user networks need {missing}, which is not installed",
            hint="install iproute2 and util-linux (apt-get install iproute2 util-linux)",
        )


# Commands


def create(root: Path, name: str, subnet_text: str | None = None) -> Network:
    """A new network, its holder running. UsageError for bad or taken names and subnets."""
    check_name(name)
    _need_tools()
    with _locked(root):
        if load(root, name) is not None:
            raise UsageError(f"network {name!r} already exists", hint="choose another name")
        taken = [IPv4Network(n.subnet) for n in every(root)]
        if subnet_text is None:
            subnet = allocate_subnet(taken, netbridge.host_routes())
        else:
            subnet = parse_subnet(subnet_text)
            clash = [n.name for n in every(root) if IPv4Network(n.subnet).overlaps(subnet)]
            if clash:
                raise UsageError(
                    f"--subnet {subnet} overlaps network {clash[0]!r}",
                    hint="give a subnet no other network uses, or none to have one chosen",
                )
        gateway = next(subnet.hosts())
        network = Network(
            name=name,
            id=secrets.token_hex(32),
            subnet=str(subnet),
            gateway=str(gateway),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        return _with_holder(root, network)


def _with_holder(root: Path, network: Network) -> Network:
    subnet = IPv4Network(network.subnet)
    gateway = IPv4Interface(f"{network.gateway}/{subnet.prefixlen}")
    # Rootless, the holder owns a user namespace mapped as our own rootless one.
    plan = userns.own_plan() if os.geteuid() != 0 else None
    holder = netbridge.start_holder(gateway, plan)
    network = dataclasses.replace(
        network, holder_pid=holder.pid, holder_start=holder.start_time, members=()
    )
    _save(root, network)
    return network


def ready(root: Path, name: str) -> Network:
    """Network ``name`` with its holder running (started again if it is gone). Call before
    entering a private mount namespace (and, rootless, before joining the holder's user
    namespace: :func:`runtime.netbridge.join_user_namespace`)."""
    _need_tools()
    with _locked(root):
        network = find(root, name)
        if netbridge.alive(network.holder):
            return network
        return _with_holder(root, network)  # its old members went with the old holder


def remove(root: Path, name: str) -> None:
    """Stop the holder and remove the record; UsageError while containers are on it."""
    with _locked(root):
        network = find(root, name)
        members = live_members(network)
        if members:
            names = " ".join(m.name for m in members)
            raise UsageError(
                f"network {name!r} has running containers: {names}",
                hint=f"stop them first (`pybuild rm -f {names}`; a foreground one ends with "
                f"its command), then `pybuild network rm {name}`",
            )
        netbridge.stop_holder(network.holder)
        (networks_dir(root) / f"{name}.json").unlink()


def inspect_doc(network: Network) -> dict[str, object]:
    """``network inspect``: docker's main fields."""
    prefix = IPv4Network(network.subnet).prefixlen
    containers = {
        m.container_id: {
            "Name": m.name,
            "IPv4Address": f"{m.address}/{prefix}",
            "Aliases": list(m.aliases),
        }
        for m in live_members(network)
    }
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Driver": "bridge",
        "Subnet": network.subnet,
        "Gateway": network.gateway,
        "IPAM": {"Config": [{"Subnet": network.subnet, "Gateway": network.gateway}]},
        "Containers": containers,
        "Holder": {"Pid": network.holder_pid if netbridge.alive(network.holder) else 0},
    }


# Membership


@contextmanager
def attached_to(
    endpoint: Endpoint, spec: ContainerSpec, directory: Path
) -> Iterator[ContainerSpec]:
    """``spec`` (joined to its private namespace) also on the endpoint's network while the
    block runs: its second interface, its address, its /etc/hosts."""
    ours = not any(m.target.rstrip("/") == "/etc/hosts" for m in spec.mounts)
    hosts_path = directory / "hosts" if ours else None
    join(endpoint, Path(spec.netns), spec.hostname, spec.hosts or _default_hosts(spec), hosts_path)
    try:
        if hosts_path is not None:
            spec = dataclasses.replace(
                spec, mounts=(*spec.mounts, BindMount(hosts_path, "/etc/hosts"))
            )
        yield spec
    finally:
        leave(endpoint)


def _default_hosts(spec: ContainerSpec) -> str:
    return f"127.0.0.1\tlocalhost {spec.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def join(
    endpoint: Endpoint, netns: Path, hostname: str, base_hosts: str, hosts_path: Path | None
) -> Member:
    """Put the container whose namespace is bound at ``netns`` on the network."""
    root = endpoint.root
    with _locked(root):
        network = _pruned(root, find(root, endpoint.network))
        taken = {n for m in network.members for n in (m.name, *m.aliases)}
        if endpoint.name in taken:
            raise UsageError(
                f"the name {endpoint.name!r} is already in use on network {network.name!r}",
                hint="choose another --name",
            )
        subnet = IPv4Network(network.subnet)
        address = next_address(subnet, [network.gateway, *(m.address for m in network.members)])
        others = [IPv4Network(n.subnet) for n in every(root) if n.name != network.name]
        link = "pb" + endpoint.container_id[:13]
        netbridge.attach(
            network.holder,
            netns,
            link,
            IPv4Interface(f"{address}/{subnet.prefixlen}"),
            unreachable_routes(subnet, others),
        )
        me = Member(
            container_id=endpoint.container_id,
            name=endpoint.name,
            aliases=endpoint.aliases,
            address=str(address),
            link=link,
            hostname=hostname,
            hosts_path=str(hosts_path or ""),
            base_hosts=base_hosts,
            pid=os.getpid(),
            pid_start=netbridge.start_time(os.getpid()) or 0,
        )
        if hosts_path is not None:
            hosts_path.write_text(hosts_text(me, (*network.members, me)), encoding="utf-8")
            hosts_path.chmod(0o644)
        network = dataclasses.replace(network, members=(*network.members, me))
        _save(root, network)
        _rewrite_hosts(network, skip=me.container_id)
        return me


def leave(endpoint: Endpoint) -> None:
    """Take the container off the network: its link, its name in the others' hosts."""
    root = endpoint.root
    with _locked(root):
        network = load(root, endpoint.network)
        if network is None:
            return
        gone = [m for m in network.members if m.container_id == endpoint.container_id]
        for member in gone:
            netbridge.detach(network.holder, member.link)
        kept = tuple(m for m in network.members if m.container_id != endpoint.container_id)
        network = dataclasses.replace(network, members=kept)
        _save(root, network)
        _rewrite_hosts(network)


def member(root: Path, network_name: str, container_id: str) -> tuple[Network, Member] | None:
    network = load(root, network_name)
    if network is None:
        return None
    found = [m for m in network.members if m.container_id == container_id]
    return (network, found[0]) if found else None


def _pruned(root: Path, network: Network) -> Network:
    """``network`` without members whose process is gone (their links removed)."""
    live = live_members(network)
    if len(live) == len(network.members):
        return network
    for m in network.members:
        if m not in live:
            netbridge.detach(network.holder, m.link)
    network = dataclasses.replace(network, members=live)
    _save(root, network)
    _rewrite_hosts(network)
    return network


def _rewrite_hosts(network: Network, skip: str = "") -> None:
    """Each member's /etc/hosts, rewritten in place: the container's bind mount is of
    this inode, so a new file would not be seen."""
    for m in network.members:
        if not m.hosts_path or m.container_id == skip:
            continue
        data = hosts_text(m, network.members).encode()
        with contextlib.suppress(OSError):
            fd = os.open(m.hosts_path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
