"""Private network namespaces with outbound access, through pasta (Debian's ``passt``).

A namespace is made with util-linux ``unshare --net=FILE``, which binds it to ``FILE``
in a directory the caller owns; the caller is in a private mount namespace
(:func:`runtime.mountns.enter_private_mount_namespace`), so the bind never shows on the
host. ``pasta`` then joins it: it copies the host's addresses and routes into it
(``--config-net``) and carries its TCP, UDP and ICMP through sockets of its own on the
host, which is what makes outbound traffic work without a bridge, NAT or firewall rules,
as root and rootless alike. Inside, a container sees only its own interfaces (no host
traffic for an ``AF_PACKET`` socket), its own abstract unix sockets, and no way to the
host's loopback: pasta's gateway mapping (``--no-map-gw``) and its port forwarding from
the namespace to the host (``-T``/``-U``, "auto" by default) are off. Ports published
with ``-p`` are pasta's ``-t``/``-u`` forwards from the host into the namespace.

pasta, rather than slirp4netns: it needs no NAT of its own (the namespace has the host's
address), takes its port forwards at start, and starts in about 45 ms here; see
``benchmarks/bench_network.py``. As root it is told to stay root (``--runas 0``): it
drops to nobody otherwise, which may no longer join a namespace of ours. It keeps only
the capabilities it needs either way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime import linux
from runtime.errors import SandboxError

PASTA = "pasta"
# Where a namespace's DNS queries go when the host's first resolver is on its loopback
# (e.g. systemd-resolved's 127.0.0.53), which the namespace cannot reach: pasta maps
# this address, UDP port 53 only, to that resolver (--dns-forward).
DNS_FORWARD = "169.254.1.53"
_STOP_WAIT = 2.0
_INSTALL_HINT = (
    "install pasta (Debian package passt), or choose another network: --network none "
    "(no network) or --network host (the host's)"
)


@dataclass(frozen=True)
class PortForward:
    """A published port: ``host_ip:host_port`` on the host to ``container_port`` inside."""

    host_port: int
    container_port: int
    protocol: str = "tcp"  # tcp | udp
    host_ip: str = ""  # "" = every address, as docker's 0.0.0.0

    def pasta_spec(self) -> str:
        address = f"{self.host_ip}/" if self.host_ip not in ("", "0.0.0.0", "::") else ""
        return f"{address}{self.host_port}:{self.container_port}"


@dataclass(frozen=True)
class PrivateNetwork:
    """A network namespace bound at ``path`` and the pasta process serving it."""

    path: Path
    pasta_pid: int
    resolv_conf: str  # what /etc/resolv.conf must say inside ("" = the host's, as is)

    def close(self) -> None:
        """Stop pasta, unbind the namespace and remove its file; safe to call twice."""
        _stop(self.pasta_pid)
        with contextlib.suppress(OSError):
            linux.umount2(str(self.path), linux.MNT_DETACH)
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.path.with_suffix(".pid").unlink()


def available() -> bool:
    return shutil.which(PASTA) is not None


def create(
    directory: Path,
    name: str,
    ports: Sequence[PortForward] = (),
    host_resolv_conf: str | None = None,
) -> PrivateNetwork:
    """A new namespace at ``directory/name`` with pasta serving it (and ``ports``).

    Raises :class:`SandboxError` with a hint when pasta is missing or fails.
    """
    pasta = shutil.which(PASTA)
    if pasta is None:
        raise SandboxError("the private network needs pasta, which is not installed",
                           hint=_INSTALL_HINT)  # fmt: skip
    if host_resolv_conf is None:
        host_resolv_conf = _read_host_resolv_conf()
    resolv_conf, forward_dns = resolv_conf_inside(host_resolv_conf)
    path = directory / name
    path.touch(mode=0o600)
    pid_file = path.with_suffix(".pid")
    try:
        _bind_new_namespace(path)
        args = pasta_args(path, pid_file, ports, forward_dns)
        started = subprocess.run(
            [pasta, *args], stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
        if started.returncode != 0:
            raise SandboxError(
                "pasta could not set up the private network: " + _last_line(started),
                hint=_pasta_hint(started, ports),
            )
        pasta_pid = int(pid_file.read_text().strip())
    except BaseException:
        with contextlib.suppress(OSError):
            linux.umount2(str(path), linux.MNT_DETACH)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return PrivateNetwork(path=path, pasta_pid=pasta_pid, resolv_conf=resolv_conf)


def pasta_args(
    path: Path, pid_file: Path, ports: Sequence[PortForward], forward_dns: bool
) -> list[str]:
    """pasta's command line (without the program) for the namespace bound at ``path``."""
    args = ["--config-net", "--no-map-gw", "--quiet", "--runas", "0"]
    args += ["-T", "none", "-U", "none"]  # nothing from the namespace to host ports
    for protocol, flag in (("tcp", "-t"), ("udp", "-u")):
        specs = [p.pasta_spec() for p in ports if p.protocol == protocol]
        for spec in specs or ["none"]:
            args += [flag, spec]
    if forward_dns:
        args += ["--dns-forward", DNS_FORWARD]
    args += ["--netns", str(path), "--pid", str(pid_file)]
    return args


def resolv_conf_inside(host_text: str) -> tuple[str, bool]:
    """The namespace's resolv.conf, and whether DNS must be forwarded (pasta's
    ``--dns-forward``): "" (the host's file as is) unless the host's first resolver is
    on its loopback; then that line names :data:`DNS_FORWARD` and other loopback
    resolvers are dropped."""
    lines = host_text.splitlines()
    servers = [line.split()[1] for line in lines if _nameserver(line)]
    if not servers or not _loopback(servers[0]):
        kept = [line for line in lines if not (_nameserver(line) and _loopback(line.split()[1]))]
        return ("" if kept == lines else "\n".join(kept) + "\n"), False
    out: list[str] = []
    forwarded = False
    for line in lines:
        if _nameserver(line) and _loopback(line.split()[1]):
            if not forwarded:
                out.append(f"nameserver {DNS_FORWARD}")
                forwarded = True
            continue
        out.append(line)
    return "\n".join(out) + "\n", True


def _nameserver(line: str) -> bool:
    parts = line.split()
    return len(parts) >= 2 and parts[0] == "nameserver"


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _read_host_resolv_conf() -> str:
    try:
        return Path("/etc/resolv.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _bind_new_namespace(path: Path) -> None:
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    done = subprocess.run(
        [unshare, f"--net={path}", "true"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SandboxError(
            "cannot create a network namespace: " + _last_line(done),
            hint="pybuild needs root, or a user namespace where it is root, for the private "
            "network; --network host uses the host's",
        )


def _pasta_hint(done: subprocess.CompletedProcess[bytes], ports: Sequence[PortForward]) -> str:
    text = (done.stderr + done.stdout).decode(errors="replace").lower()
    if "tun" in text:
        return (
            "pasta cannot open /dev/net/tun: rootless networking needs it readable and "
            "writable by your user (mode 0666, the default of most distributions: "
            "chmod 0666 /dev/net/tun as root), or use --network none|host"
        )
    if ports and ("bind" in text or "address in use" in text or "port" in text):
        shown = ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}/{p.protocol}" for p in ports)
        return f"a host port is taken or not allowed ({shown}): publish another one"
    return _INSTALL_HINT


def _last_line(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = [
        line
        for line in (done.stderr + done.stdout).decode(errors="replace").splitlines()
        if line.strip() and "syslog" not in line
    ]
    return lines[-1].strip() if lines else f"exit status {done.returncode}"


def _stop(pid: int) -> None:
    """SIGTERM pasta and wait (it is not our child: it forked to the background)."""
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + _STOP_WAIT
    while time.monotonic() < deadline:
        if _exited(pid):
            return
        time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _exited(pid: int) -> bool:
    """True once ``pid`` has exited. pasta's parent is whoever reaps orphans (PID 1 or a
    subreaper), which may take seconds to: a zombie has exited, though ``kill(pid, 0)``
    still finds it (waiting for the reap cost ~2 s per network closed on a VM whose init
    reaps late)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # a /proc of another pid namespace: only kill() can tell
    state = stat[stat.rfind(")") + 2 :][:1]  # the field after "(comm)"
    return state in ("Z", "X")
