"""Typed errors of the registry client (reference, client, auth in cache.distribution)."""

from __future__ import annotations

from cache.errors import CacheError


class RegistryError(CacheError):
    """A registry could not be reached or answered something we cannot use."""


class RegistryUnreachable(RegistryError):
    """The registry did not answer (connection failures or 5xx until the retries ran out)."""


class InvalidReference(RegistryError):
    """An image reference is not well formed."""


class RegistryAuthError(RegistryError):
    """The registry refused our credentials (or we had none and it wants some)."""


class ManifestNotFound(RegistryError):
    """The registry has no manifest for that tag or digest."""


class CredentialsError(RegistryError):
    """Docker's config.json or a credential helper could not be read or written."""
