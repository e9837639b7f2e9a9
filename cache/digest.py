"""The one place digests are made and checked.

sha256 digests identify OCI content (blobs, diff_ids, manifests); xxh3-128 makes fast
fingerprints for cache keys and context files, where no OCI tool needs to read them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import xxhash

from cache.errors import DigestMismatch, InvalidDigest

_SHA256_HEX = re.compile(r"^[a-f0-9]{64}$")
_CHUNK = 1 << 20


@dataclass(frozen=True, order=True)
class Digest:
    """An OCI content digest such as ``sha256:<64 hex>`` (only sha256 is produced here)."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        if self.algorithm != "sha256" or not _SHA256_HEX.match(self.hex):
            raise InvalidDigest(f"not a sha256 digest: {self.algorithm}:{self.hex}")

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``; raises InvalidDigest for anything else."""
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidDigest(f"not a digest (expected sha256:<hex>): {text!r}")
        return cls(algorithm, hexpart)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """The first 12 hex digits, as docker shows image ids."""
        return self.hex[:12]


class Sha256:
    """Incremental sha256 that yields a Digest: hash while streaming, never in a second pass."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest("sha256", self._h.hexdigest())


def sha256_bytes(data: bytes) -> Digest:
    """The sha256 digest of a byte string."""
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def sha256_stream(stream: BinaryIO) -> tuple[Digest, int]:
    """Digest and size of everything left in a binary stream."""
    h = Sha256()
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
    return h.digest(), h.size


def sha256_file(path: Path) -> Digest:
    """The sha256 digest of a file's content, read in chunks."""
    with open(path, "rb") as f:
        return sha256_stream(f)[0]


def verify(expected: Digest, actual: Digest, what: str, *, hint: str | None = None) -> None:
    """Raise DigestMismatch (with ``hint``) unless the two digests are equal."""
    if expected != actual:
        raise DigestMismatch(f"{what}: expected {expected}, got {actual}", hint=hint)


class Fingerprint:
    """Incremental xxh3-128 fingerprint (hex); fast, not for OCI content."""

    def __init__(self) -> None:
        self._h = xxhash.xxh3_128()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())
