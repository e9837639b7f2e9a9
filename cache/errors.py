"""Typed errors of the cache package; each carries an optional hint for the user."""

from __future__ import annotations

import errno


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


class DiskFull(CacheError):
    """The file system holding the store is full, or the user is over quota."""


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError saying the disk is full (ENOSPC) or over quota."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


def disk_full_hint(where: object) -> str:
    """What to do when the disk holding ``where`` (a path) is full."""
    return (
        f"the disk holding {where} is full (or over quota): free space there, or remove "
        "unused cache entries with `pybuild cache prune` (`--all` frees the most)"
    )


def disk_full(what: str, where: object) -> DiskFull:
    """A DiskFull error: ``what`` could not be done because the disk of ``where`` is full."""
    return DiskFull(f"{what}: no space left on the device", hint=disk_full_hint(where))


class IndexDamaged(CacheError):
    """The store's index (index.db) is not a readable database; repair rebuilds it."""


class PlatformNotFound(CacheError):
    """An image index has no image for the platform asked for."""
