"""The shared-cache format: step records and their layers as one OCI image manifest.

Like BuildKit's ``image-manifest=true`` cache form, a cache export is an ordinary OCI
image manifest, so any OCI layout or registry can hold it: its ``config`` (and its
``artifactType``) is our own media type, a JSON document of step records (cache key ->
layer descriptor, diff_id, the key's inputs, the duration of the run that made it, the
time it made the layer, and the key format version); its ``layers`` are the layer blobs
those records name, each once. Nothing here touches a file or the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cache.digest import Digest, sha256_bytes
from cache.errors import CacheError, InvalidDigest, InvalidImage
from cache.index import StepRecord
from cache.keys import KEY_VERSION, inputs_from_json, step_key
from cache.oci import JSON, MEDIA_OCI_MANIFEST, Descriptor, canonical_json, load_json

MEDIA_CACHE_CONFIG = "application/vnd.pybuild.cache.config.v1+json"
CACHE_FORMAT = 1  # of the config document itself; KEY_VERSION is that of the keys in it


class InvalidCache(CacheError):
    """A cache export (layout, manifest or config) is malformed."""


@dataclass(frozen=True)
class CacheConfig:
    """The records of one cache export, made under key format ``key_version``."""

    key_version: int
    records: tuple[StepRecord, ...]


@dataclass(frozen=True)
class CacheManifest:
    """A cache export's manifest: its config blob and the layer blobs its records name."""

    config: Descriptor
    layers: tuple[Descriptor, ...]

    def to_bytes(self) -> bytes:
        """The manifest as canonical JSON (what is stored and pushed)."""
        doc: dict[str, JSON] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "artifactType": MEDIA_CACHE_CONFIG,
            "config": self.config.to_json(),
            "layers": [d.to_json() for d in self.layers],
        }
        return canonical_json(doc)


def encode_config(records: Sequence[StepRecord]) -> bytes:
    """The config document for ``records`` (sorted by key, so the order given is moot)."""
    doc: dict[str, JSON] = {
        "format": CACHE_FORMAT,
        "keyVersion": KEY_VERSION,
        "records": [_record_json(r) for r in sorted(records, key=lambda r: r.key)],
    }
    return canonical_json(doc)


def make_manifest(records: Sequence[StepRecord]) -> tuple[CacheManifest, bytes]:
    """The manifest and config bytes exporting ``records``; each layer listed once."""
    config = encode_config(records)
    layers: dict[Digest, Descriptor] = {}
    for record in sorted(records, key=lambda r: r.key):
        if record.layer is not None:
            layers.setdefault(record.layer.digest, record.layer)
    desc = Descriptor(MEDIA_CACHE_CONFIG, sha256_bytes(config), len(config))
    return CacheManifest(desc, tuple(layers.values())), config


def parse_manifest(data: bytes, where: str) -> CacheManifest:
    """A cache manifest from its bytes; InvalidCache when it is not one of ours."""
    try:
        obj = load_json(data, f"{where}: manifest")
        if obj.get("schemaVersion") != 2:
            raise InvalidCache(f"{where}: manifest schemaVersion must be 2")
        config = Descriptor.from_json(obj.get("config"))
        layers = obj.get("layers") or []
        if not isinstance(layers, list):
            raise InvalidCache(f"{where}: manifest layers must be a list")
        parsed = tuple(Descriptor.from_json(d) for d in layers)
    except InvalidCache:
        raise
    except CacheError as exc:
        raise InvalidCache(f"{where}: malformed manifest: {exc.message}") from None
    if config.media_type != MEDIA_CACHE_CONFIG:
        raise InvalidCache(
            f"{where} is not a pybuild cache (its config is {config.media_type or 'untyped'!r})",
            hint="point --cache-from at what --cache-to wrote",
        )
    return CacheManifest(config, parsed)


def decode_config(data: bytes, where: str) -> CacheConfig:
    """The records of a config document; InvalidCache when it is malformed.

    Records made under another key format are returned as they are: the caller compares
    ``key_version`` with ``KEY_VERSION`` and decides (they can never hit).
    """
    try:
        obj = load_json(data, f"{where}: cache config")
    except CacheError as exc:
        raise InvalidCache(exc.message) from None
    version, records = obj.get("keyVersion"), obj.get("records")
    if not isinstance(version, int) or not isinstance(records, list):
        raise InvalidCache(f"{where}: cache config needs keyVersion and records")
    return CacheConfig(version, tuple(_record_from(r, where) for r in records))


def consistent(record: StepRecord) -> bool:
    """True when the record's key is the key of its own inputs (a damaged or forged
    record is not imported: it could only ever hit under a key it does not describe)."""
    try:
        return step_key(inputs_from_json(record.inputs)) == record.key
    except CacheError:
        return False


def _record_json(record: StepRecord) -> dict[str, JSON]:
    return {
        "key": record.key,
        "layer": None if record.layer is None else record.layer.to_json(),
        "diffID": None if record.diff_id is None else str(record.diff_id),
        "inputs": record.inputs,
        "duration": record.duration,
        # When its layer was made: an image built from the imported record gets the
        # same history times, hence the same ID (BuildKit's "buildkit/createdat").
        "created": record.created,
    }


def _record_from(obj: JSON, where: str) -> StepRecord:
    if not isinstance(obj, dict):
        raise InvalidCache(f"{where}: a cache record is not an object")
    try:
        key, inputs = obj["key"], obj["inputs"]
        layer, diff_id = obj.get("layer"), obj.get("diffID")
        duration, created = obj.get("duration", 0.0), obj.get("created", 0.0)
        if not isinstance(key, str) or not isinstance(inputs, str):
            raise TypeError("key and inputs must be strings")
        if not isinstance(duration, int | float):
            raise TypeError("duration must be a number")
        if not isinstance(created, int | float) or isinstance(created, bool) or created < 0:
            raise TypeError("created must be a unix time")
        if (layer is None) != (diff_id is None):
            raise TypeError("layer and diffID go together")
        return StepRecord(
            key=key,
            layer=None if layer is None else Descriptor.from_json(layer),
            diff_id=None if diff_id is None else Digest.parse(str(diff_id)),
            inputs=inputs,
            duration=float(duration),
            created=float(created),  # 0.0: exported by a pybuild that did not keep it
        )
    except (KeyError, TypeError, InvalidDigest, InvalidImage) as exc:
        detail = exc.message if isinstance(exc, CacheError) else str(exc)
        raise InvalidCache(f"{where}: malformed cache record: {detail}") from None
