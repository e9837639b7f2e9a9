"""Docker platform strings (``linux/arm64``, ``linux/arm/v7``, ``arm64``): parse, normalise,
match.

The rules are containerd's ``platforms`` package (``Parse``, ``Normalize``,
``NormalizeArch``), which docker and BuildKit use: os and architecture are lower-cased,
aliases become the canonical architecture (``aarch64`` → ``arm64``, ``x86_64`` →
``amd64``, ``armhf`` → ``arm/v7``), ``arm64/v8`` and ``amd64/v1`` lose their default
variant, ``arm`` gets ``v7``. A lone word is an architecture (the host's os) when it is
one, else an os (the host's architecture). No PyPI library does this (the docker SDK
passes the strings through), hence this small pure module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from cache.errors import CacheError
from cache.oci import Platform, host_platform

__all__ = [
    "PlatformError",
    "host_platform",
    "normalize",
    "parse_platform",
    "parse_platforms",
    "same_platform",
]

# The architectures containerd's NormalizeArch knows, with their aliases.
_ARCH_ALIASES = {
    "i386": "386",
    "386": "386",
    "x86_64": "amd64",
    "x86-64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "arm": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64le": "mips64le",
    "loong64": "loong64",
}
_OSES = frozenset({"linux", "windows", "darwin", "freebsd"})


class PlatformError(CacheError):
    """A platform string is malformed or names nothing known."""


def normalize(platform: Platform) -> Platform:
    """containerd's Normalize: canonical os, architecture and variant."""
    os_name = platform.os.lower()
    if os_name == "macos":
        os_name = "darwin"
    raw = platform.architecture.lower()
    arch = _ARCH_ALIASES.get(raw, raw)
    variant = platform.variant.lower()
    if (arch, variant) in _DEFAULT_VARIANTS:
        variant = ""
    elif arch == "arm":
        variant = _arm_variant(raw, variant)
    return Platform(os_name, arch, variant)


# Variants that name the architecture's default, which the normal form leaves out.
_DEFAULT_VARIANTS = frozenset({("amd64", "v1"), ("arm64", "8"), ("arm64", "v8"), ("arm64", "v8.0")})


def _arm_variant(raw: str, variant: str) -> str:
    if not variant:
        return {"armhf": "v7", "armel": "v6"}.get(raw, "v7")
    return f"v{variant}" if variant in ("5", "6", "7", "8") else variant


def parse_platform(text: str, host: Platform | None = None) -> Platform:
    """Parse ``os[/arch[/variant]]`` or a lone architecture; the result is normalised.

    ``local`` is the host's platform. Raises PlatformError naming what is wrong."""
    here = host if host is not None else host_platform()
    spec = text.strip()
    if spec.lower() == "local":
        return here
    parts = spec.split("/")
    if not spec or any(not p for p in parts) or len(parts) > 3:
        raise PlatformError(
            f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64",
            hint="use docker's notation: linux/amd64, linux/arm64, linux/arm/v7",
        )
    if len(parts) == 1:
        word = parts[0].lower()
        if word in _ARCH_ALIASES:
            return normalize(Platform(here.os, word, ""))
        if word in _OSES:
            return normalize(replace(here, os=word))
        raise PlatformError(
            f"invalid platform {text!r}: {word!r} is neither an os nor an architecture",
            hint="use docker's notation: linux/amd64, linux/arm64, linux/arm/v7",
        )
    variant = parts[2] if len(parts) == 3 else ""
    return normalize(Platform(parts[0], parts[1], variant))


def parse_platforms(text: str, host: Platform | None = None) -> tuple[Platform, ...]:
    """A comma-separated ``--platform`` list, normalised, duplicates dropped, order kept."""
    out: list[Platform] = []
    for item in text.split(","):
        if not item.strip():
            raise PlatformError(
                f"invalid platform list {text!r}: an empty entry",
                hint="separate platforms with single commas: linux/amd64,linux/arm64",
            )
        platform = parse_platform(item, host)
        if platform not in out:
            out.append(platform)
    return tuple(out)


def same_platform(a: Platform, b: Platform) -> bool:
    """Equal once both are normalised (``linux/aarch64`` is ``linux/arm64/v8``)."""
    return normalize(a) == normalize(b)


def describe(platforms: Sequence[Platform]) -> str:
    """``linux/amd64, linux/arm64``: how messages list platforms."""
    return ", ".join(str(p) for p in platforms) or "none"
