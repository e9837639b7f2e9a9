"""Memo records: small JSON files that remember a blob derived from another one.

A conversion (``cache.convert``) and a clamp (``cache.clamp``) each remember their
result as ``{"digest": ..., "size": ...}`` (and more) in a file named for the source,
so the work is done once per store. A record that is missing, torn or names a blob
that is gone reads as None: the caller derives the blob again and rewrites it.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from cache.digest import Digest
from cache.errors import CacheError, InvalidDigest, LayerError
from cache.oci import canonical_json
from cache.store import BlobStore


def read_memo(blobs: BlobStore, path: Path) -> tuple[Digest, int, dict[str, Any]] | None:
    """The recorded blob's digest and size and the whole record, or None when the
    record is absent or unreadable or its blob is gone or has another size."""
    try:
        record = json.loads(path.read_bytes())
        digest, size = Digest.parse(str(record["digest"])), int(record["size"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, InvalidDigest):
        return None  # unreadable or torn by hand: deriving again rewrites it
    try:
        if blobs.size(digest) != size:
            return None
    except CacheError:
        return None  # pruned since: derive again
    return digest, size, record


def write_memo(blobs: BlobStore, path: Path, record: dict[str, Any], what: str) -> None:
    """Write the record atomically: a temp file in the store's tmp dir, fsync, rename.
    ``what`` names the record in the error (``the conversion``)."""
    tmp = blobs.tmp_dir / f"memo-{uuid.uuid4().hex}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(canonical_json(record))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LayerError(
            f"cannot record {what} in {path}: {exc.strerror or exc}",
            hint="check free space and permissions in the pybuild store",
        ) from None
