"""Store usage and pruning: what the store holds by kind, and removing what is not needed.

What a tagged image needs is never removed: its manifest, config and layer blobs, its
unpacked layers, and the step records whose layer is one of its layers. Everything else
is held by step records; pruning removes records, then every blob and unpacked layer no
remaining record or tag refers to.

Builds hold ``build_guard`` (``cache.gclock``: a shared flock on ``<root>/locks/gc``)
from their first lookup to their tag, and ``prune`` takes it exclusively, so a prune
never deletes a blob a running build has written but not yet recorded. ``pybuild load``
and ``pybuild pull`` hold it too (their blobs are unreferenced until the tag is written
last), and ``pybuild run`` while it unpacks its image's layers. A container then holds a
lease on what its image needs (cache/leases.py) instead: prune and repair keep what live
leases name (an image run by digest, or untagged meanwhile, has layers no tag keeps) and
never wait for a container.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from cache.clamp import clamped_from, sweep_memos
from cache.digest import Digest
from cache.errors import CacheError, InvalidDigest
from cache.gclock import exclusive_guard
from cache.images import read_images
from cache.index import Index, StepRecord
from cache.leases import live_leases
from cache.store import BlobStore
from cache.unpacked import UnpackedLayers
from fstree.tree import remove_tree, walk


@dataclass(frozen=True)
class Needed:
    """What the tags and the step records refer to."""

    tagged_blobs: frozenset[Digest]  # manifests, configs and layers of tagged images
    tagged_diff_ids: frozenset[Digest]
    manifests: frozenset[Digest]  # manifest and config blobs of tagged images
    record_layers: frozenset[Digest]
    record_diff_ids: frozenset[Digest]
    broken_tags: tuple[str, ...] = ()  # tags whose image cannot be read
    leased_blobs: frozenset[Digest] = frozenset()  # what live containers use
    leased_diff_ids: frozenset[Digest] = frozenset()
    # diff_ids of step layers clamped to SOURCE_DATE_EPOCH into a tagged image's layers
    clamped_sources: frozenset[Digest] = frozenset()

    def made_tagged(self, record: StepRecord) -> bool:
        """The record made a tagged image's layer (as it is, or clamped)."""
        if record.layer is not None and record.layer.digest in self.tagged_blobs:
            return True
        return record.diff_id is not None and record.diff_id in self.clamped_sources

    @property
    def blobs(self) -> frozenset[Digest]:
        return self.tagged_blobs | self.record_layers | self.leased_blobs

    @property
    def diff_ids(self) -> frozenset[Digest]:
        return self.tagged_diff_ids | self.record_diff_ids | self.leased_diff_ids


def needed(blobs: BlobStore, index: Index, records: list[StepRecord] | None = None) -> Needed:
    """Collect what tags, ``records`` (default: every step record) and live leases refer to."""
    tagged: set[Digest] = set()
    manifests: set[Digest] = set()
    diff_ids: set[Digest] = set()
    broken: list[str] = []
    for name, digest in index.tags():
        tagged.add(digest)
        manifests.add(digest)
        try:
            images = read_images(blobs, digest)  # an index: each platform's image
        except CacheError:
            broken.append(name)
            continue
        for image in images:
            manifests.update((image.digest, image.config_digest))
            tagged.update((image.digest, image.config_digest))
            tagged.update(layer.digest for layer in image.manifest.layers)
            diff_ids.update(image.config.diff_ids)
    records = index.steps() if records is None else records
    leases = live_leases(blobs.root)
    layers = frozenset(tagged) - frozenset(manifests)
    return Needed(
        tagged_blobs=frozenset(tagged),
        tagged_diff_ids=frozenset(diff_ids),
        manifests=frozenset(manifests),
        record_layers=frozenset(r.layer.digest for r in records if r.layer),
        record_diff_ids=frozenset(r.diff_id for r in records if r.diff_id),
        broken_tags=tuple(broken),
        leased_blobs=frozenset(d for lease in leases for d in lease.blobs),
        leased_diff_ids=frozenset(d for lease in leases for d in lease.diff_ids),
        clamped_sources=clamped_from(blobs, layers),
    )


@dataclass(frozen=True)
class Usage:
    """Bytes the store uses, by kind (``pybuild cache du``)."""

    layer_blobs: int
    config_blobs: int  # manifests and configs of tagged images
    other_blobs: int  # blobs nothing refers to (untagged images, leftovers)
    unpacked: int
    index: int
    tmp: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        blobs = self.layer_blobs + self.config_blobs + self.other_blobs
        return blobs + self.unpacked + self.index + self.tmp


def usage(blobs: BlobStore, layers: UnpackedLayers, index: Index) -> Usage:
    """Measure the store; sizes are apparent file sizes."""
    need = needed(blobs, index)
    sizes = {"layer": 0, "config": 0, "other": 0}
    counts = {"layer": 0, "config": 0, "other": 0, "unpacked": 0}
    for digest in blobs.digests():
        kind = _blob_kind(digest, need)
        try:
            sizes[kind] += blobs.size(digest)
        except CacheError:
            continue  # removed meanwhile
        counts[kind] += 1
    unpacked = 0
    for entry in _dirs(layers.root):
        unpacked += tree_size(entry)
        counts["unpacked"] += 1
    index_size = sum(p.stat().st_size for p in blobs.root.glob("index.db*") if p.is_file())
    return Usage(
        layer_blobs=sizes["layer"],
        config_blobs=sizes["config"],
        other_blobs=sizes["other"],
        unpacked=unpacked,
        index=index_size,
        tmp=tree_size(blobs.tmp_dir),
        counts=counts,
    )


def _blob_kind(digest: Digest, need: Needed) -> str:
    if digest in need.manifests:
        return "config"
    if digest in need.blobs:
        return "layer"
    return "other"


def _dirs(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except FileNotFoundError:
        return []


def tree_size(root: Path) -> int:
    """Apparent size of the files below ``root``, each hard-linked inode once (0 if gone).

    Dirs it may not read are skipped; a tree of any depth is measured.
    """
    total = 0
    seen: set[tuple[int, int]] = set()
    try:
        for _rel, st in walk(root, skip_unreadable=True):
            if stat.S_ISDIR(st.st_mode):
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue  # busybox-style images link one binary hundreds of times
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        pass  # ``root`` itself is gone or unreadable: nothing we can count
    return total


@dataclass(frozen=True)
class PruneOptions:
    """``remove_all``: every record a tag does not need; otherwise only records unused for
    ``unused_for`` seconds. ``keep_storage``: then drop least recently used records until
    blobs and unpacked layers fit in that many bytes."""

    remove_all: bool = False
    unused_for: float | None = 48 * 3600.0
    keep_storage: int | None = None


@dataclass(frozen=True)
class PruneReport:
    records: int
    blobs: int
    unpacked: int
    builds: int
    bytes_freed: int


def prune(
    blobs: BlobStore, layers: UnpackedLayers, index: Index, options: PruneOptions
) -> PruneReport:
    """Remove unneeded records, then whatever no record or tag refers to.

    Waits (up to a minute) for running builds to finish; raises StoreLocked after that.
    Running containers are not waited for: what their leases name is kept.
    """
    with exclusive_guard(blobs.root):
        live_leases(blobs.root, clean=True)  # those of dead processes keep nothing
        now = time.time()
        tagged = needed(blobs, index, records=[])
        records = index.steps()
        doomed = _doomed(records, tagged, options, now)
        doomed |= _over_budget(blobs, records, doomed, tagged, options)
        for key in sorted(doomed):
            index.remove_step(key)
        # The build history stays: it is what `cache stats` and `cache history` measure,
        # and a benchmark prunes between builds; only `cache stats --reset` clears it.
        if options.remove_all:
            _remove_cache_mounts(blobs)
        return _sweep(blobs, layers, needed(blobs, index), len(doomed), 0)


def _remove_cache_mounts(blobs: BlobStore) -> None:
    """``--all`` also empties the RUN --mount=type=cache dirs (``<root>/cachemounts``);
    no build runs meanwhile (we hold the exclusive guard), so none is in use."""
    cache_mounts = blobs.root / "cachemounts"
    if cache_mounts.is_dir():
        doomed = blobs.tmp_dir / f"cachemounts-pruned-{os.getpid()}"
        os.rename(cache_mounts, doomed)  # gone at once; the removal may take a while
        remove_tree(doomed, ignore_errors=True)  # what is left: clean_dead_tmp, verify


def _last_used(record: StepRecord) -> float:
    return record.used if record.used is not None else record.created


def _doomed(
    records: list[StepRecord], tagged: Needed, options: PruneOptions, now: float
) -> set[str]:
    doomed: set[str] = set()
    for record in records:
        if tagged.made_tagged(record):
            continue  # a tagged image's layer: rebuilding that image must still hit
        old = options.unused_for is None or now - _last_used(record) > options.unused_for
        if old:
            doomed.add(record.key)
    return doomed if (options.remove_all or options.unused_for is not None) else set()


def _over_budget(
    blobs: BlobStore,
    records: list[StepRecord],
    doomed: set[str],
    tagged: Needed,
    options: PruneOptions,
) -> set[str]:
    """Least recently used records to drop so the kept layers fit in ``keep_storage``."""
    if options.keep_storage is None:
        return set()
    kept = [r for r in records if r.key not in doomed]
    kept_bytes = sum(r.layer.size for r in kept if r.layer) + sum(
        blobs.size(d) for d in tagged.tagged_blobs if blobs.has(d)
    )
    more: set[str] = set()
    for record in sorted(kept, key=_last_used):
        if kept_bytes <= options.keep_storage:
            break
        if record.layer is None or tagged.made_tagged(record):
            continue
        more.add(record.key)
        kept_bytes -= record.layer.size
    return more


def _sweep(
    blobs: BlobStore, layers: UnpackedLayers, need: Needed, records: int, builds: int
) -> PruneReport:
    freed = removed = 0
    for digest in list(blobs.digests()):
        if digest in need.blobs:
            continue
        try:
            size = blobs.size(digest)
        except CacheError:
            continue
        blobs.remove(digest)
        freed += size
        removed += 1
    sweep_memos(blobs)  # clamped-layer records whose blob just went
    unpacked = 0
    for path in _dirs(layers.root):
        try:
            diff_id = Digest("sha256", path.name)
        except InvalidDigest:
            continue  # not ours; verify reports it
        if diff_id not in need.diff_ids:
            freed += tree_size(path)
            layers.remove(diff_id)
            unpacked += 1
    return PruneReport(records, removed, unpacked, builds, freed)
