"""``pybuild cache verify``: check the store against itself, and optionally repair it.

Problems (the store is not clean): a blob whose content does not match its name, a step
record or tag whose blobs are missing or unreadable, a record with a malformed row, a temp
entry a dead process left that the next command's sweep has not removed (e.g. it failed).
An unpacked layer that differs from the manifest recorded when it was unpacked (an
edited, added or removed file) is a problem too.
Notes (reported, harmless): blobs and unpacked layers nothing refers to, stray files.
Repair removes every bad entry, so the next build rebuilds what they held, and unpacks
tampered layers again from their blobs (not one a running container uses).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cache.deadtmp import dead_tmp
from cache.digest import Digest, Sha256
from cache.errors import CacheError, InvalidDigest
from cache.gc import Needed, needed
from cache.gclock import exclusive_guard
from cache.images import read_images
from cache.index import Index
from cache.leases import live_leases
from cache.oci import Descriptor
from cache.store import BlobStore, force_rmtree, remove_if_unlocked
from cache.unpacked import UnpackedLayers

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    kind: str  # "corrupt-blob", "missing-blob", "broken-tag", "bad-record", "unreferenced"...
    subject: str  # the digest, key, tag or path concerned
    detail: str
    problem: bool  # False for notes such as unreferenced files


@dataclass(frozen=True)
class VerifyReport:
    findings: tuple[Finding, ...]
    blobs_checked: int
    records_checked: int
    repaired: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # repairs that did not work, with the reason

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.problem)

    @property
    def clean(self) -> bool:
        return not self.problems


def verify_store(
    blobs: BlobStore, layers: UnpackedLayers, index: Index, *, repair: bool = False
) -> VerifyReport:
    """Check every blob's digest, every record's and tag's blobs, every unpacked dir.

    With ``repair``, waits for running builds, then removes corrupt blobs, records and
    tags whose blobs are missing, and unpacked dirs of no known layer.
    """
    if not repair:
        return _check(blobs, layers, index)
    with exclusive_guard(blobs.root):
        live_leases(blobs.root, clean=True)  # those of dead processes keep nothing
        report = _check(blobs, layers, index)
        done: list[str] = []
        failed: list[str] = []
        for finding in report.findings:
            if not _fixable(finding):
                continue
            try:
                done.append(_repair(blobs, layers, index, finding))
            except OSError as exc:
                failed.append(f"{finding.kind} {finding.subject}: {exc.strerror or exc}")
        return VerifyReport(
            report.findings,
            report.blobs_checked,
            report.records_checked,
            tuple(done),
            tuple(failed),
        )


def _check(blobs: BlobStore, layers: UnpackedLayers, index: Index) -> VerifyReport:
    findings: list[Finding] = []
    corrupt: set[Digest] = set()
    checked = 0
    for digest in blobs.digests():
        checked += 1
        if (actual := _hash_blob(blobs, digest)) is not None and actual != digest:
            corrupt.add(digest)
            findings.append(Finding("corrupt-blob", str(digest), f"content is {actual}", True))
    try:
        records = index.steps()
    except CacheError as exc:
        findings.append(Finding("bad-record", str(index.path), exc.message, True))
        records = []
    for record in records:
        if record.layer is None:
            continue
        if not blobs.has(record.layer.digest) or record.layer.digest in corrupt:
            what = "corrupt" if record.layer.digest in corrupt else "missing"
            detail = f"its layer {record.layer.digest} is {what}"
            findings.append(Finding("missing-blob", record.key, detail, True))
    need = needed(blobs, index, records)
    for name in need.broken_tags:
        findings.append(Finding("broken-tag", name, "its manifest or config is unreadable", True))
    findings += _tag_layers(blobs, index, corrupt)
    findings += _notes(blobs, layers, need)
    findings += [
        Finding("stale-tmp", str(path), "temp entry a dead process left", True)
        for path in dead_tmp(blobs)
    ]
    findings += _tampered(layers, need)
    return VerifyReport(tuple(findings), checked, len(records))


def _hash_blob(blobs: BlobStore, digest: Digest) -> Digest | None:
    """The blob's actual sha256, or None if it vanished while we looked."""
    h = Sha256()
    try:
        with open(blobs.path(digest), "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except (CacheError, FileNotFoundError):
        return None
    return h.digest()


def _tag_layers(blobs: BlobStore, index: Index, corrupt: set[Digest]) -> list[Finding]:
    findings = []
    for name, digest in index.tags():
        try:
            images = read_images(blobs, digest)
        except CacheError:
            continue  # already reported as a broken tag
        for layer in (layer for image in images for layer in image.manifest.layers):
            if not blobs.has(layer.digest) or layer.digest in corrupt:
                detail = f"layer {layer.digest} is missing or corrupt"
                findings.append(Finding("broken-tag", name, detail, True))
    return findings


def _notes(blobs: BlobStore, layers: UnpackedLayers, need: Needed) -> list[Finding]:
    notes = []
    for digest in sorted(blobs.digests(), key=str):
        if digest not in need.blobs:
            notes.append(Finding("unreferenced", str(digest), "blob no tag or record uses", False))
    blob_dir = blobs.root / "blobs" / "sha256"
    for name in sorted(os.listdir(blob_dir)):
        try:
            Digest("sha256", name)
        except InvalidDigest:
            notes.append(Finding("stray-file", str(blob_dir / name), "not a blob name", True))
    for path in sorted(p for p in layers.root.iterdir()):
        try:
            diff_id = Digest("sha256", path.name)
        except InvalidDigest:
            notes.append(Finding("stray-file", str(path), "not an unpacked layer", True))
            continue
        if diff_id not in need.diff_ids:
            notes.append(
                Finding("unreferenced-layer", str(path), "unpacked layer of no record", False)
            )
    for name in sorted(layers.meta.names()):
        if not (layers.root / name).is_dir():
            detail = "manifest of a layer that is not unpacked"
            notes.append(Finding("stale-layer-record", name, detail, False))
    return notes


def _tampered(layers: UnpackedLayers, need: Needed) -> list[Finding]:
    """Known unpacked layers compared in full with the manifest recorded when placed
    (unreferenced ones are notes, and every use checks a layer first anyway)."""
    found = []
    for path in sorted(p for p in layers.root.iterdir() if p.is_dir() and not p.is_symlink()):
        try:
            diff_id = Digest("sha256", path.name)
        except InvalidDigest:
            continue  # a stray file, reported above
        if diff_id not in need.diff_ids:
            continue
        mismatch = layers.check(diff_id, path)
        if mismatch is not None:
            detail = f"differs from what was unpacked: {mismatch.describe()}"
            found.append(Finding("tampered-layer", str(path), detail, True))
    return found


def _layer_sources(blobs: BlobStore, index: Index) -> dict[Digest, Descriptor]:
    """The blob each known diff_id is unpacked from (tagged images and step records)."""
    sources: dict[Digest, Descriptor] = {}
    for _, digest in index.tags():
        try:
            images = read_images(blobs, digest)
        except CacheError:
            continue
        for image in images:
            sources.update(zip(image.config.diff_ids, image.manifest.layers, strict=False))
    for record in index.steps():
        if record.layer is not None and record.diff_id is not None:
            sources[record.diff_id] = record.layer
    return sources


def _fix_layer(blobs: BlobStore, layers: UnpackedLayers, index: Index, subject: str) -> str:
    diff_id = Digest("sha256", os.path.basename(subject))
    if any(diff_id in lease.diff_ids for lease in live_leases(blobs.root)):
        return f"left tampered layer {subject}: a running container uses it (repair after it exits)"
    layers.remove(diff_id)
    source = _layer_sources(blobs, index).get(diff_id)
    if source is None or not blobs.has(source.digest):
        return f"removed tampered layer {subject} (no blob to unpack it from)"
    try:
        layers.ensure(source, diff_id)
    except CacheError as exc:
        return f"removed tampered layer {subject}; unpacking it again failed: {exc.message}"
    return f"unpacked tampered layer {subject} again from blob {source.digest}"


def _fixable(finding: Finding) -> bool:
    return finding.problem or finding.kind in ("unreferenced-layer", "stale-layer-record")


def _repair(blobs: BlobStore, layers: UnpackedLayers, index: Index, finding: Finding) -> str:
    """Remove the bad entry ``finding`` names; returns what was done."""
    if finding.kind == "corrupt-blob":
        blobs.remove(Digest.parse(finding.subject))
        return f"removed corrupt blob {finding.subject}"
    if finding.kind == "missing-blob":
        index.remove_step(finding.subject)
        return f"removed step record {finding.subject[:12]}"
    if finding.kind == "broken-tag":
        index.remove_tag(finding.subject)
        return f"removed tag {finding.subject}"
    if finding.kind == "stale-layer-record":
        layers.meta.forget(finding.subject)
        return f"removed the manifest of layer {finding.subject[:12]}"
    if finding.kind == "tampered-layer":
        return _fix_layer(blobs, layers, index, finding.subject)
    if finding.kind == "unreferenced-layer":
        layers.remove(Digest("sha256", os.path.basename(finding.subject)))
        return f"removed unpacked layer {finding.subject}"
    if finding.kind == "stale-tmp":
        return _remove_stale_tmp(finding.subject)
    if finding.kind == "stray-file":
        return _remove_stray(finding.subject)
    return f"left {finding.kind} {finding.subject}"


def _remove_stale_tmp(subject: str) -> str:
    if remove_if_unlocked(Path(subject)):
        return f"removed temp entry {subject}"
    return f"left temp entry {subject}: a process took it meanwhile"


def _remove_stray(subject: str) -> str:
    path = Path(subject)
    if path.is_dir() and not path.is_symlink():
        force_rmtree(path)
    else:
        path.unlink(missing_ok=True)
    return f"removed stray {subject}"
