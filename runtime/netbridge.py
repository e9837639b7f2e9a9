"""A user-defined network's Linux side: a bridge in a network namespace of its own, kept
alive by a holder process, and a veth link from each member's namespace into it.

The holder is ``unshare --net -- sleep infinity`` in a session of its own (rootless:
``unshare --user --net``, see below): the namespace lives as long as that process, and
any later pybuild process reaches it through ``/proc/PID/ns/net`` (a bind mount would
not do: each pybuild process has a private mount namespace, so a bind made by one is
invisible to the next). A holder is named by its pid and its start time
(``/proc/PID/stat``), so a reused pid is never taken for it; its namespaces are opened
once and then used through the open files.

Interfaces are made with iproute2's ``ip`` under util-linux ``nsenter``: no netlink
code of ours and no new Python dependency. Nothing is made in the host's namespace: the
bridge (with the gateway address), the holder's ends of the veths are in the holder's
namespace, the other ends in the containers'. Killing the holder frees its namespace and
with it the bridge and every veth end still in it; a container's namespace going away
removes its veth pair too.

Rootless, a veth between two namespaces needs CAP_NET_ADMIN over both, i.e. in the user
namespace owning each. So a non-root user's holder owns a user namespace too (ids mapped
as :func:`runtime.userns.enter_rootless` maps them: the user is its root, the subordinate
range its other ids), and a pybuild process that runs a container on the network joins
that user namespace (:func:`join_user_namespace`) instead of making its own: the
container's namespace is then owned by the holder's user namespace as the bridge's is,
and the process, its root, may link them. One user namespace per network: containers of
different networks share no namespace at all. Another user's process has no capability
there (user_namespaces(7)), so a user can neither join nor change another's networks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from runtime import userns
from runtime.errors import SandboxError

BRIDGE = "br0"
_WAIT = 2.0
_TOOLS = ("ip", "nsenter", "unshare", "sleep")
# Rootless: waits for its maps (a line on stdin), then becomes the holder.
_HOLDER_SCRIPT = 'read _ok || exit 1; exec "$0" infinity </dev/null'


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


def holder_command(unshare: str, sleep: str, own_user_ns: bool) -> list[str]:
    """The holder's command line: its new namespaces, then ``sleep infinity`` (rootless,
    after a line on its stdin says its user namespace is mapped)."""
    if not own_user_ns:
        return [unshare, "--net", "--", sleep, "infinity"]
    return [unshare, "--user", "--net", "--", "/bin/sh", "-c", _HOLDER_SCRIPT, sleep]


def start_holder(gateway: IPv4Interface, plan: userns.UserNsPlan | None = None) -> Holder:
    """A new holder with a bridge addressed ``gateway``, up; SandboxError when it fails.
    With ``plan`` (rootless) it owns a user namespace mapped by ``plan`` as well."""
    sleep = _tool("sleep")
    process = subprocess.Popen(
        holder_command(_tool("unshare"), sleep, plan is not None),
        stdin=subprocess.DEVNULL if plan is None else subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives this process and its terminal
        cwd="/",  # pins no directory of the caller's
    )
    try:
        if plan is not None:
            _map_holder(process, plan)
        _wait_until(process, lambda: _cmdline(process.pid) == f"{sleep}\0infinity\0".encode())
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise
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


def _map_holder(process: subprocess.Popen[bytes], plan: userns.UserNsPlan) -> None:
    """Once the rootless holder has unshared, install its maps and let it go on."""
    ours = _ns_id("self", "user")
    _wait_until(process, lambda: _ns_id(str(process.pid), "user") not in (ours, None))
    userns.map_child(process.pid, plan)
    assert process.stdin is not None
    try:
        process.stdin.write(b"go\n")
        process.stdin.close()
    except OSError as exc:  # it died meanwhile
        raise SandboxError(f"the network's holder process ended at start: {exc}") from exc


def _wait_until(process: subprocess.Popen[bytes], done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _WAIT
    while not done():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SandboxError(
                "cannot create the network's namespace (unshare failed)",
                hint="user networks need root, or unprivileged user namespaces "
                "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces)",
            )
        time.sleep(0.002)


def stop_holder(holder: Holder) -> None:
    """Kill the holder (its namespace goes with it) and wait until it is gone."""
    if not alive(holder):
        return
    try:
        os.kill(holder.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    except PermissionError:
        raise SandboxError(
            f"cannot stop the network's holder process {holder.pid}: it is not yours",
            hint="remove the network as the user who created it",
        ) from None
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
    with _holder_ns(holder) as enter:
        _ip(enter, commands)


def owns_user_namespace(holder: Holder) -> bool:
    """True when the holder's user namespace is not ours (a rootless holder seen from
    outside it); SandboxError when the holder is gone."""
    fd = _open_ns(holder, "user")
    try:
        return not _is_ours(fd, "user")
    finally:
        os.close(fd)


def join_user_namespace(holder: Holder) -> None:
    """Become root of the holder's user namespace (see the module's docstring). Call while
    single-threaded, before any other namespace is entered; SandboxError when the holder
    is gone or not ours."""
    fd = _open_ns(holder, "user")
    try:
        userns.join(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def nsenter_args(net_fd: int, user_fd: int | None) -> list[str]:
    """nsenter's options for the holder's namespaces, open as our fds ``net_fd`` and
    ``user_fd`` (given when its user namespace is not ours: nsenter then enters it first;
    the credentials stay ours, which are its root)."""
    args = [f"--net=/proc/self/fd/{net_fd}"]
    if user_fd is not None:
        args = [f"--user=/proc/self/fd/{user_fd}", "--preserve-credentials", *args]
    return args


@contextlib.contextmanager
def _holder_ns(holder: Holder) -> Iterator[list[str]]:
    """nsenter's options for the holder's namespaces, valid for our children (inherited
    fds)."""
    fds = [_open_ns(holder, "net")]
    try:
        fds.append(_open_ns(holder, "user"))
        user_fd = None if _is_ours(fds[1], "user") else fds[1]
        for fd in fds:
            os.set_inheritable(fd, True)
        yield nsenter_args(fds[0], user_fd)
    finally:
        for fd in fds:
            os.close(fd)


def _open_ns(holder: Holder, kind: str) -> int:
    """The holder's namespace ``kind`` open; checked after the open, so a reused pid
    fails here."""
    try:
        fd = os.open(f"/proc/{holder.pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0 and alive(holder):
        return fd
    if fd >= 0:
        os.close(fd)
    raise SandboxError(
        f"the network's holder process {holder.pid} is gone",
        hint="remove the network and create it again",
    )


def _ns_id(pid: str, kind: str) -> tuple[int, int] | None:
    try:
        found = os.stat(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None
    return (found.st_dev, found.st_ino)


def _is_ours(fd: int, kind: str) -> bool:
    found = os.fstat(fd)
    return (found.st_dev, found.st_ino) == _ns_id("self", kind)


def _ip(enter: str | list[str], commands: Sequence[str]) -> None:
    """``commands`` through ``ip -batch`` in the namespace bound at ``enter`` (a path) or
    the one nsenter's options ``enter`` name."""
    options = [f"--net={enter}"] if isinstance(enter, str) else enter
    done = subprocess.run(
        [_tool("nsenter"), *options, _tool("ip"), "-batch", "-"],
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
            f"cannot set up the network link: {last}",
            hint="user networks need iproute2 (and, rootless, the network's own user namespace)",
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
