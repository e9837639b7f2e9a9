"""Importing a cache export into a store: its records become hits on this machine.

Eager: every usable record's layer is copied into the store (verified against its
digest as it streams in) before the record is written to the index, so a record in the
index always has its blob. A record is used only when its key is the key of its own
inputs and its layer is a layer media type we can unpack; records made under another
key format version are all ignored (they could never hit). A record the store already
has is left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Protocol

from cache.errors import CacheError
from cache.index import Index
from cache.keys import KEY_VERSION
from cache.oci import LAYER_MEDIA_TYPES, Descriptor
from cache.store import BlobStore
from cache.transfer.exporter import CacheConfig, consistent


class CacheSource(Protocol):
    """Where an export's layer blobs come from (a local layout or a registry)."""

    def fetch(self, desc: Descriptor, blobs: BlobStore) -> None:
        """Put the blob into ``blobs`` verified, or raise CacheError and store nothing."""
        ...


@dataclass(frozen=True)
class ImportResult:
    imported: int  # records written to the index
    present: int  # records the store already had
    warnings: tuple[str, ...]  # records (or the whole export) left out, and why


def import_records(
    config: CacheConfig, source: CacheSource, blobs: BlobStore, index: Index, where: str
) -> ImportResult:
    """Copy the usable records of ``config`` (and their layers from ``source``) in."""
    if config.key_version != KEY_VERSION:
        return ImportResult(
            0,
            0,
            (
                f"cache from {where} was made with key format version "
                f"{config.key_version}, this pybuild uses {KEY_VERSION}: its "
                f"{len(config.records)} records are ignored",
            ),
        )
    imported = present = 0
    warnings: list[str] = []
    now = time.time()
    for record in config.records:
        if not consistent(record):
            warnings.append(
                f"cache from {where}: record {record.key[:12]} does not match its inputs; ignored"
            )
            continue
        if record.layer is not None and record.layer.media_type not in LAYER_MEDIA_TYPES:
            warnings.append(
                f"cache from {where}: record {record.key[:12]} has a layer of "
                f"unknown type {record.layer.media_type!r}; ignored"
            )
            continue
        existing = index.get_step(record.key)
        if existing is not None and (existing.layer is None or blobs.has(existing.layer.digest)):
            present += 1
            continue
        if record.layer is not None:
            try:
                source.fetch(record.layer, blobs)
            except CacheError as exc:
                warnings.append(f"{exc.message}; step {record.key[:12]} will run")
                continue
        # The layer keeps the time it was made (history times, hence the image ID);
        # marked used now, so prune counts its age from the import.
        made = record.created if record.created > 0 else now
        index.put_step(replace(record, created=made, used=now))
        imported += 1
    return ImportResult(imported, present, tuple(warnings))
