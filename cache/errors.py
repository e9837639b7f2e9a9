"""Typed errors of the cache package; each carries an optional hint for the user."""

from __future__ import annotations


class CacheError(Exception):
    """Base of every cache/store failure."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidDigest(CacheError):
    """A string is not a well-formed digest."""


class DigestMismatch(CacheError):
    """Content does not match the digest it was stored or fetched under."""


class BlobNotFound(CacheError):
    """The store has no blob with that digest."""


class InvalidImage(CacheError):
    """An OCI/docker document (manifest, index, config, archive) is malformed."""


class LayerError(CacheError):
    """A layer tar could not be written or safely extracted."""


class StoreLocked(CacheError):
    """Another process holds a lock we could not wait for."""


class IndexDamaged(CacheError):
    """The store's index (index.db) is not a readable database; repair rebuilds it."""
