"""The build args BuildKit defines itself: proxies, the platform, its own options.

Both the build checks (``builder.frontend.checks``) and the planner read them, so they
live with the frontend, which the planner builds on.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

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
# declared with ARG NAME). pybuild builds for the local platform only.
PLATFORM_ARGS: Mapping[str, str] = MappingProxyType(
    {
        "TARGETPLATFORM": "linux/amd64",
        "TARGETOS": "linux",
        "TARGETARCH": "amd64",
        "TARGETVARIANT": "",
        "BUILDPLATFORM": "linux/amd64",
        "BUILDOS": "linux",
        "BUILDARCH": "amd64",
        "BUILDVARIANT": "",
    }
)

# Build args BuildKit consumes itself: never reported as "not consumed by any ARG".
BUILTIN_ARGS = PROXY_ARGS | frozenset(PLATFORM_ARGS) | {"SOURCE_DATE_EPOCH", "TARGETSTAGE"}
# RUN's hostname and the build checks' options (dockerui/config.go)
BUILTIN_ARGS |= {"BUILDKIT_SANDBOX_HOSTNAME", "BUILDKIT_DOCKERFILE_CHECK"}
