"""The build args BuildKit defines itself: proxies, the platform, its own options.

Both the build checks (``builder.frontend.checks``) and the planner read them, so they
live with the frontend, which the planner builds on.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cache.oci import Platform, host_platform

# docker's predefined ARGs: usable without ARG, kept out of cache keys and history.
PROXY_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    }
)


# BuildKit's automatic platform ARGs (global scope: usable in FROM, and in a stage once
# declared with ARG NAME): the target platform of the build being planned and the
# platform pybuild runs on (dockerfile2llb/platform.go).
PLATFORM_ARG_NAMES = frozenset(
    {
        "TARGETPLATFORM",
        "TARGETOS",
        "TARGETARCH",
        "TARGETVARIANT",
        "BUILDPLATFORM",
        "BUILDOS",
        "BUILDARCH",
        "BUILDVARIANT",
    }
)


def platform_args(target: Platform, build: Platform) -> Mapping[str, str]:
    """The automatic platform ARGs' values for one target platform."""
    values: dict[str, str] = {}
    for prefix, platform in (("TARGET", target), ("BUILD", build)):
        values[f"{prefix}PLATFORM"] = str(platform)
        values[f"{prefix}OS"] = platform.os
        values[f"{prefix}ARCH"] = platform.architecture
        values[f"{prefix}VARIANT"] = platform.variant
    return MappingProxyType(values)


def host_platform_args() -> Mapping[str, str]:
    """The platform ARGs of a build for this machine (build checks use these values)."""
    host = host_platform()
    return platform_args(host, host)


# Build args BuildKit consumes itself: never reported as "not consumed by any ARG".
BUILTIN_ARGS = PROXY_ARGS | PLATFORM_ARG_NAMES | {"SOURCE_DATE_EPOCH", "TARGETSTAGE"}
# RUN's hostname and the build checks' options (dockerui/config.go)
BUILTIN_ARGS |= {"BUILDKIT_SANDBOX_HOSTNAME", "BUILDKIT_DOCKERFILE_CHECK"}
