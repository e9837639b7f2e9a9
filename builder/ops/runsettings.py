"""Build-wide settings for every RUN step: ``--add-host``, ``--shm-size``, ``--ulimit``.

As in BuildKit, where they are fields of each exec op (ExtraHosts, ShmSize, Ulimit), they
are part of every RUN step's cache key, but only when set: a build without them keeps
the keys it always had.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.errors import UsageError
from builder.frontend.units import ram_in_bytes
from runtime.spec import Rlimit

# The names docker's --ulimit takes (go-units), as RLIMIT_* suffixes.
ULIMITS = (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
)  # fmt: skip


@dataclass(frozen=True)
class RunSettings:
    """``add_hosts``: (host, ip) pairs for /etc/hosts; ``shm_size`` in bytes."""

    add_hosts: tuple[tuple[str, str], ...] = ()
    shm_size: int | None = None
    ulimits: tuple[Rlimit, ...] = ()

    def key_extra(self) -> tuple[tuple[str, str], ...]:
        """What the RUN key adds for these settings (nothing when none is set)."""
        extra = tuple(("add-host", f"{h}={ip}") for h, ip in self.add_hosts)
        if self.shm_size is not None:
            extra += (("shm-size", str(self.shm_size)),)
        extra += tuple(("ulimit", f"{u.name}={u.soft}:{u.hard}") for u in self.ulimits)
        return extra

    def hosts_file(self, hostname: str) -> str:
        """/etc/hosts for a RUN step: "" (the sandbox's own) unless --add-host was given."""
        if not self.add_hosts:
            return ""
        lines = [f"127.0.0.1\tlocalhost {hostname}", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{ip}\t{host}" for host, ip in self.add_hosts]
        return "\n".join(lines) + "\n"


def parse_run_settings(
    add_hosts: list[str], shm_size: str | None, ulimits: list[str]
) -> RunSettings:
    """The build's flags as RunSettings; UsageError naming the flag on bad input."""
    return RunSettings(
        tuple(_add_host(h) for h in add_hosts),
        None if shm_size is None else parse_shm_size(shm_size),
        tuple(parse_ulimit(u) for u in ulimits),
    )


def _add_host(item: str) -> tuple[str, str]:
    """``HOST:IP`` (docker also takes ``HOST=IP``); the IP may be IPv6 (it has colons)."""
    sep = "=" if "=" in item else ":"
    host, found, ip = item.partition(sep)
    if not found or not host or not ip or any(c.isspace() for c in item):
        raise UsageError(f"--add-host {item!r}: expected HOST:IP", hint="e.g. db:10.0.0.5")
    if ip == "host-gateway":
        raise UsageError(
            f"--add-host {item!r}: host-gateway is not supported: RUN steps have no way to the "
            "host from their private network here",
            hint="build with --network host and use 127.0.0.1 to reach the host's services",
        )
    return host, ip


def parse_shm_size(text: str) -> int:
    """``64m``, ``1g``, ``512k`` or bytes, as docker's --shm-size (go-units RAMInBytes);
    at least 1 KiB."""
    try:
        size = ram_in_bytes(text)
    except ValueError:
        size = 0
    if size == 0:
        raise UsageError(f"--shm-size {text!r}: expected a size", hint="e.g. 64m or 1g")
    if size < 1024:
        raise UsageError(f"--shm-size {text!r}: must be at least 1k")
    return size


def parse_ulimit(text: str) -> Rlimit:
    """``NAME=SOFT[:HARD]`` as docker's --ulimit (-1 or ``unlimited``: no limit)."""
    name, sep, values = text.partition("=")
    if not sep or name not in ULIMITS:
        raise UsageError(
            f"--ulimit {text!r}: expected NAME=SOFT[:HARD]",
            hint="NAME is one of " + ", ".join(ULIMITS),
        )
    soft_text, _, hard_text = values.partition(":")
    soft = _limit(soft_text, text)
    hard = _limit(hard_text, text) if hard_text else soft
    if hard != -1 and (soft == -1 or soft > hard):
        raise UsageError(f"--ulimit {text!r}: the soft limit is above the hard one")
    return Rlimit(name, soft, hard)


def _limit(value: str, text: str) -> int:
    if value in ("-1", "unlimited"):
        return -1
    if not (value.isascii() and value.isdigit()):
        raise UsageError(f"--ulimit {text!r}: {value!r} is not a number")
    return int(value)
