"""What a pull needs besides the reference: registry options, credentials, platform.

A module of its own so that a build, which always carries these, imports neither the
pull machinery nor httpx unless a base image is actually missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cache.distribution.options import RegistryOptions
from cache.oci import Platform


@dataclass(frozen=True)
class RemoteOptions:
    """``docker_config`` is the directory of docker's config.json (None: anonymous only)."""

    registry: RegistryOptions = field(default_factory=RegistryOptions)
    docker_config: Path | None = None
    platform: Platform = field(default_factory=Platform)
    jobs: int = 4
