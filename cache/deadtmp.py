"""Temp entries that killed processes left in the store, found by their free locks.

Apart from ``cache.gc`` because every build sweeps them at its start, and a build has no
other use for the collector.
"""

from __future__ import annotations

import time
from pathlib import Path

from cache.store import BlobStore, is_locked, remove_if_unlocked

# Temp entries that BlobStore.writer and temp_dir hold under an flock while alive; with
# the lock free their maker is dead, so they go at once, past a short grace that covers
# the instant between creating an entry and locking it.
_LOCKED_PREFIXES = ("blob-", "step-", "unpack-", "dir-", "meta-", "net-")
_DEAD_GRACE = 2.0


def clean_dead_tmp(blobs: BlobStore, *, grace: float = _DEAD_GRACE) -> int:
    """Remove temp entries left by killed processes (unlocked, of a locked kind).

    ``BlobStore.clean_tmp`` waits a day for entries it cannot tell from live ones; the
    entries here are always locked while alive, so a free lock means a dead owner.
    Returns how many were removed. One that cannot be removed is left (a build must
    still start); ``pybuild cache verify`` reports it and ``--repair`` retries.
    """
    removed = 0
    for entry in dead_tmp(blobs, grace=grace):
        try:
            removed += remove_if_unlocked(entry)
        except FileNotFoundError:
            continue  # its owner finished with it meanwhile
        except OSError:
            continue
    return removed


def dead_tmp(blobs: BlobStore, *, grace: float = _DEAD_GRACE) -> list[Path]:
    """Temp entries of a locked kind older than ``grace`` seconds whose lock is free: what
    killed (or failed) processes left behind."""
    cutoff = time.time() - grace
    found = []
    for entry in sorted(blobs.tmp_dir.iterdir()):
        if not entry.name.startswith(_LOCKED_PREFIXES) or entry.is_symlink():
            continue
        try:
            if entry.lstat().st_mtime > cutoff or is_locked(entry):
                continue
        except FileNotFoundError:
            continue  # its owner finished with it meanwhile
        except OSError:
            continue  # cannot even open it to test the lock: not ours to judge
        found.append(entry)
    return found
