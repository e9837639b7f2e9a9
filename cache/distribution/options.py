"""How to talk to registries: options the CLI fills from flags.

Kept apart from ``cache.distribution.client`` so that code which only carries the options (every
build does) does not import httpx, which costs a fifth of a second at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegistryOptions:
    """How to talk to registries; the CLI fills it from flags."""

    insecure_registries: tuple[str, ...] = ()
    retries: int = 4
    backoff: float = 0.5  # seconds before the first retry; doubled for each next one
    timeout: float = 60.0
    chunk_size: int = 32 << 20  # blobs larger than this are uploaded in PATCH chunks
    max_manifest: int = 4 << 20
