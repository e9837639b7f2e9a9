"""A user-defined network's Linux side: a bridge in a network namespace of its own, kept
alive by a holder process, and a veth link from each member's namespace into it.

The holder is ``unshare --net -- sleep infinity`` in a session of its own: the namespace
lives as long as that process, and any later pybuild process reaches it through
``/proc/PID/ns/net`` (a bind mount would not do: each pybuild process has a private mount
namespace, so a bind made by one is invisible to the next). A holder is named by its pid
and its start time (``/proc/PID/stat``), so a reused pid is never taken for it; its
namespace is opened once and then used through the open file.

Interfaces are made with iproute2's ``ip`` under util-linux ``nsenter --net``: no netlink
code of ours and no new Python dependency. Nothing is made in the host's namespace: the
bridge (with the gateway address), the holder's ends of the veths are in the holder's
namespace, the other ends in the containers'. Killing the holder frees its namespace and
with it the bridge and every veth end still in it; a container's namespace going away
removes its veth pair too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from runtime.errors import SandboxError

BRIDGE = "br0"
_WAIT = 2.0
_TOOLS = ("ip", "nsenter", "unshare", "sleep")


@dataclass(frozen=True)
class Holder:
    """The process holding a network's namespace."""

    pid: int
    start_time: int  # clock ticks after boot (/proc/PID/stat field 22)


def missing_tool() -> str:
    """The first tool user networks need that is not installed ("" when none is)."""
    return next((tool for tool in _TOOLS if shutil.which(tool) is None), "")


def start_time(pid: int) -> int | None:
    """When process ``pid`` started, None when it does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def alive(holder: Holder) -> bool:
    return holder.pid > 0 and start_time(holder.pid) == holder.start_time


def start_holder(gateway: IPv4Interface) -> Holder:
    """A new holder with a bridge addressed ``gateway``, up; SandboxError when it fails."""
    sleep = _tool("sleep")
    process = subprocess.Popen(
        [_tool("unshare"), "--net", "--", sleep, "infinity"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives this process and its terminal
        cwd="/",  # pins no directory of the caller's
    )
    deadline = time.monotonic() + _WAIT
    while _cmdline(process.pid) != f"{sleep}\0infinity\0".encode():  # exec'd: its namespace is made
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise SandboxError(
                "cannot create the network's namespace (unshare --net failed)",
                hint="user networks need root",
            )
        time.sleep(0.002)
    begun = start_time(process.pid)
    holder = Holder(process.pid, begun or 0)
    try:
        run_in_holder(
            holder,
            [
                f"link add {BRIDGE} type bridge",
                f"addr add {gateway} dev {BRIDGE}",
                f"link set {BRIDGE} up",
                "link set lo up",
            ],
        )
    except BaseException:
        stop_holder(holder)
        raise
    return holder


def stop_holder(holder: Holder) -> None:
    """Kill the holder (its namespace goes with it) and wait until it is gone."""
    if not alive(holder):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(holder.pid, signal.SIGKILL)
    deadline = time.monotonic() + _WAIT
    while start_time(holder.pid) == holder.start_time and time.monotonic() < deadline:
        time.sleep(0.005)


def attach(
    holder: Holder,
    netns: Path,
    link: str,
    address: IPv4Interface,
    unreachable: Sequence[IPv4Network] = (),
) -> str:
    """A veth pair: ``link`` on the holder's bridge, its peer in the namespace bound at
    ``netns`` with ``address`` (and ``unreachable`` routes, so other networks' subnets fail
    at once rather than going out through the default route); the peer's name."""
    peer = free_name(interface_names(netns))
    veth = f"link add {link} type veth peer name {peer} netns {netns}"
    run_in_holder(holder, [veth, f"link set {link} master {BRIDGE} up"])
    commands = [f"addr add {address} dev {peer}", f"link set {peer} up"]
    commands += [f"route add unreachable {net}" for net in unreachable]
    try:
        _ip(str(netns), commands)
    except BaseException:
        detach(holder, link)
        raise
    return peer


def detach(holder: Holder, link: str) -> None:
    """Remove the veth pair whose holder end is ``link``; nothing when it is gone."""
    with contextlib.suppress(SandboxError):
        run_in_holder(holder, [f"link del {link}"])


def interface_names(netns: Path) -> list[str]:
    return _names(_ip_output(str(netns), ["-o", "link", "show"]))


def free_name(taken: Sequence[str]) -> str:
    """The first of eth1, eth2, ... not in ``taken`` (pasta's interface is eth0 or the
    host's interface name)."""
    number = 1
    while f"eth{number}" in taken:
        number += 1
    return f"eth{number}"


def host_routes(route_table: str | None = None) -> list[IPv4Network]:
    """The host's IPv4 routes but the default one (``/proc/net/route``)."""
    if route_table is None:
        try:
            route_table = Path("/proc/net/route").read_text()
        except OSError:
            return []
    found = []
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest, mask = (int.from_bytes(bytes.fromhex(f), "little") for f in (fields[1], fields[7]))
        if mask == 0:
            continue
        with contextlib.suppress(ValueError):
            found.append(
                IPv4Network(f"{ipaddress.IPv4Address(dest)}/{ipaddress.IPv4Address(mask)}")
            )
    return found


def run_in_holder(holder: Holder, commands: Sequence[str]) -> None:
    with _holder_ns(holder) as path:
        _ip(path, commands)


@contextlib.contextmanager
def _holder_ns(holder: Holder) -> Iterator[str]:
    """The holder's namespace as a path valid for our children (an inherited fd)."""
    try:
        fd = os.open(f"/proc/{holder.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    try:
        if fd < 0 or not alive(holder):  # checked after the open: a reused pid fails here
            raise SandboxError(
                f"the network's holder process {holder.pid} is gone",
                hint="remove the network and create it again",
            )
        os.set_inheritable(fd, True)
        yield f"/proc/self/fd/{fd}"
    finally:
        if fd >= 0:
            os.close(fd)


def _ip(netns: str, commands: Sequence[str]) -> None:
    done = subprocess.run(
        [_tool("nsenter"), f"--net={netns}", _tool("ip"), "-batch", "-"],
        input="\n".join(commands) + "\n",
        capture_output=True,
        text=True,
        close_fds=False,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr + done.stdout).strip().splitlines()
        last = lines[-1] if lines else f"ip exited {done.returncode}"
        raise SandboxError(
            f"cannot set up the network link: {last}", hint="user networks need iproute2 and root"
        )


def _ip_output(netns: str, args: Sequence[str]) -> str:
    done = subprocess.run(
        [_tool("nsenter"), f"--net={netns}", _tool("ip"), *args],
        capture_output=True,
        text=True,
        close_fds=False,
        check=False,
    )
    return done.stdout


def _names(listing: str) -> list[str]:
    """Interface names from ``ip -o link show`` ("3: eth1@if4: <...> ...")."""
    names = []
    for line in listing.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            names.append(parts[1].strip().split("@")[0])
    return names


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _tool(name: str) -> str:
    return shutil.which(name) or name
