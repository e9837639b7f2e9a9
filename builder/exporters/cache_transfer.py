"""``--cache-to`` / ``--cache-from``: share step records and layers between stores.

Specs follow BuildKit's: ``type=local,dest=DIR[,mode=min|max]`` and
``type=local,src=DIR`` (an OCI layout), ``type=registry,ref=REF[,mode=min|max]`` (a bare
``REF`` means the same). ``mode=min`` (the default, as in BuildKit) exports the steps
whose layers make the final image: the target stage and the stages it is built FROM;
``mode=max`` exports every step of every stage built, so pre-stages read only through
``COPY --from`` or mounts hit on the other machine too.

Import happens before the solve (records and verified blobs are copied into the store);
export after the image is committed. A missing registry cache is a warning, not an
error (BuildKit does the same); a missing or malformed local one is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError, UsageError
from builder.images.store import Storage
from builder.plan.planner import Plan
from builder.solve import StepResult
from cache.errors import CacheError
from cache.index import StepRecord

TYPES = ("local", "registry")
MODES = ("min", "max")
Warn = Callable[[str], None]


@dataclass(frozen=True)
class CacheSpec:
    """One --cache-to or --cache-from: a local layout directory or a registry reference."""

    type: str  # "local" | "registry"
    location: str  # the directory (dest= or src=) or the reference (ref=)
    mode: str = "min"  # exports only


def parse_cache_spec(spec: str, flag: str) -> CacheSpec:
    """Parse ``type=...,...``; UsageError naming ``flag`` and the spec when it is bad."""
    if "=" not in spec:
        return CacheSpec("registry", spec)  # BuildKit: a bare value is a registry ref
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {spec}: expected key=value pairs, got {part!r}")
        fields[key.strip()] = value.strip()
    kind = fields.pop("type", "")
    if kind not in TYPES:
        raise UsageError(
            f"{flag} {spec}: unsupported cache type {kind!r}",
            hint="use type=local,dest=DIR / type=local,src=DIR or type=registry,ref=REF",
        )
    exporting = flag == "--cache-to"
    where = ("dest" if exporting else "src") if kind == "local" else "ref"
    location = fields.pop(where, "")
    if not location:
        raise UsageError(f"{flag} {spec}: {where}= is required")
    mode = fields.pop("mode", "min") if exporting else "min"
    if mode not in MODES:
        raise UsageError(f"{flag} {spec}: mode must be min or max, not {mode!r}")
    if fields:
        raise UsageError(f"{flag} {spec}: unknown option(s) {', '.join(sorted(fields))}")
    return CacheSpec(kind, location, mode)


def parse_cache_specs(specs: Sequence[str] | None, flag: str) -> tuple[CacheSpec, ...]:
    return tuple(parse_cache_spec(s, flag) for s in specs or ())


def import_caches(storage: Storage, specs: Sequence[CacheSpec], warn: Warn) -> int:
    """Import every --cache-from into the store; returns the records imported."""
    total = 0
    for spec in specs:
        try:
            total += _import_one(storage, spec, warn)
        except CacheError as exc:
            raise BuildError(
                f"--cache-from {spec.type}:{spec.location}: {exc.message}", hint=exc.hint
            ) from None
    return total


def _import_one(storage: Storage, spec: CacheSpec, warn: Warn) -> int:
    from cache.transfer.importer import import_records

    if spec.type == "local":
        from cache.transfer.layout import LayoutSource

        layout = LayoutSource(Path(spec.location))
        result = import_records(
            layout.config(), layout, storage.blobs, storage.index, spec.location
        )
    else:
        from builder.registry.options import RemoteOptions
        from builder.registry.pull import credentials_for
        from cache.distribution.client import RegistryClient
        from cache.distribution.reference import parse_reference
        from cache.transfer.registry import RegistrySource

        options = storage.pull_options or RemoteOptions()
        ref = parse_reference(spec.location)
        creds = credentials_for(options, ref)
        with RegistryClient(ref, credentials=creds, options=options.registry) as client:
            source = RegistrySource(client, storage.blobs)
            if source.manifest is None:
                warn(f"--cache-from {spec.location}: no cache there yet; building without it")
                return 0
            config = source.config()
            result = import_records(config, source, storage.blobs, storage.index, str(ref))
    for message in result.warnings:
        warn(message)
    return result.imported


def exported_stages(plan: Plan, mode: str) -> set[int]:
    """The stages whose steps ``mode`` exports (see the module docstring)."""
    if mode == "max":
        return {s.index for s in plan.stages}
    by_index = {s.index: s for s in plan.stages}
    chain: set[int] = set()
    current: int | None = plan.target
    while current is not None and current not in chain:
        chain.add(current)
        current = by_index[current].base_stage if current in by_index else None
    return chain


def records_for(
    storage: Storage, plan: Plan, steps: Sequence[StepResult], mode: str
) -> list[StepRecord]:
    """The index records of the build's keyed steps that ``mode`` exports."""
    stages = exported_stages(plan, mode)
    records: dict[str, StepRecord] = {}
    for step in steps:
        if step.key is None or step.stage not in stages or step.key in records:
            continue
        record = storage.index.get_step(step.key)
        if record is not None:
            records[step.key] = record
    return list(records.values())


def export_caches(
    storage: Storage,
    specs: Sequence[CacheSpec],
    plan: Plan,
    steps: Sequence[StepResult],
    note: Warn,
) -> None:
    """Write every --cache-to; ``note`` gets one line per export."""
    for spec in specs:
        records = records_for(storage, plan, steps, spec.mode)
        try:
            digest = _export_one(storage, spec, records)
        except CacheError as exc:
            raise BuildError(
                f"--cache-to {spec.type}:{spec.location}: {exc.message}", hint=exc.hint
            ) from None
        note(
            f"exported cache ({len(records)} records, mode={spec.mode}) to {spec.location} {digest}"
        )


def _export_one(storage: Storage, spec: CacheSpec, records: list[StepRecord]) -> str:
    if spec.type == "local":
        from cache.transfer.layout import write_layout

        return str(write_layout(Path(spec.location), records, storage.blobs))
    from builder.registry.options import RemoteOptions
    from builder.registry.pull import credentials_for
    from cache.distribution.client import RegistryClient
    from cache.distribution.reference import parse_reference
    from cache.transfer.registry import push_cache

    options = storage.pull_options or RemoteOptions()
    ref = parse_reference(spec.location)
    creds = credentials_for(options, ref)
    with RegistryClient(ref, credentials=creds, options=options.registry, push=True) as client:
        return str(push_cache(client, records, storage.blobs))
