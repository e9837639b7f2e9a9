"""Validate OCI documents against the image-spec JSON schemas in ../shared/conformance.

Wiring as that folder's README describes: each schema file registered (draft-04) under
its file name and every alias URL, validated with ``{"$ref": <main URL>}``; plus the four
checks upstream's validator makes in code, so every ``expectations.json`` verdict holds.

Use ``validate(document, media_type)`` (errors as strings, [] when valid), or
``check_layout(dir)`` for a whole OCI layout directory.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

CONFORMANCE = Path(__file__).resolve().parents[1].parent / "shared" / "conformance"
SPEC_DIR = CONFORMANCE / "oci-image-spec"
SCHEMA_DIR = SPEC_DIR / "schema"

_BASE = "https://opencontainers.org/schema"
ALIASES = {
    "config-schema.json": [f"{_BASE}/image/config"],
    "content-descriptor.json": [f"{_BASE}/descriptor", f"{_BASE}/image/content-descriptor.json"],
    "defs-descriptor.json": [
        f"{_BASE}/image/descriptor/mediaType",
        f"{_BASE}/defs-descriptor.json",
        f"{_BASE}/image/defs-descriptor.json",
    ],
    "defs.json": [
        f"{_BASE}/defs.json",
        f"{_BASE}/image/defs.json",
        f"{_BASE}/image/descriptor/defs.json",
    ],
    "image-index-schema.json": [f"{_BASE}/image/index"],
    "image-layout-schema.json": [f"{_BASE}/image/layout"],
    "image-manifest-schema.json": [f"{_BASE}/image/manifest"],
}
MEDIA_SCHEMAS = {
    "application/vnd.oci.image.manifest.v1+json": f"{_BASE}/image/manifest",
    "application/vnd.oci.image.index.v1+json": f"{_BASE}/image/index",
    "application/vnd.oci.image.config.v1+json": f"{_BASE}/image/config",
    "application/vnd.oci.descriptor.v1+json": f"{_BASE}/descriptor",
    "application/vnd.oci.layout.header.v1+json": f"{_BASE}/image/layout",
}
_ENV = re.compile(r"^[^=]+=.*$")
_SHA256 = re.compile(r"^[a-f0-9]{64}$")
_SHA512 = re.compile(r"^[a-f0-9]{128}$")
# RFC 3986: a URI starts with a scheme; no spaces or other characters outside its set.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")


@functools.cache
def registry() -> Registry[Any]:
    """Every schema file under its file name and each alias URL."""
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        resource = Resource.from_contents(
            json.loads(path.read_text()), default_specification=DRAFT4
        )
        resources.append((path.name, resource))
        resources += [(alias, resource) for alias in ALIASES.get(path.name, [])]
    return Registry().with_resources(resources)


@functools.cache
def _validator(media_type: str) -> Draft4Validator:
    return Draft4Validator(
        {"$ref": MEDIA_SCHEMAS[media_type]}, registry=registry(), format_checker=FormatChecker()
    )


def validate(document: Any, media_type: str) -> list[str]:
    """Schema errors plus upstream's extra checks for one parsed document; [] if valid."""
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in _validator(media_type).iter_errors(document)
    ]
    if not isinstance(document, dict):
        return errors
    if media_type == "application/vnd.oci.image.config.v1+json":
        env = (document.get("config") or {}).get("Env") or []
        errors += [f"config.Env: {e!r} is not KEY=VALUE" for e in env if not _ENV.match(str(e))]
    for descriptor in _descriptors(document, media_type):
        errors += _descriptor_errors(descriptor)
    return errors


def _descriptors(document: dict[str, Any], media_type: str) -> list[dict[str, Any]]:
    if media_type == "application/vnd.oci.descriptor.v1+json":
        return [document]
    if media_type not in (_INDEX, _MANIFEST):
        return []  # a config's "config" is the container config, not a descriptor
    found = [document.get("config"), document.get("subject")]
    found += list(document.get("layers") or []) + list(document.get("manifests") or [])
    return [d for d in found if isinstance(d, dict)]


def _descriptor_errors(descriptor: dict[str, Any]) -> list[str]:
    errors = []
    algorithm, _, encoded = str(descriptor.get("digest", "")).partition(":")
    pattern = {"sha256": _SHA256, "sha512": _SHA512}.get(algorithm)
    if pattern is not None and not pattern.match(encoded):
        errors.append(f"digest {descriptor.get('digest')!r}: bad {algorithm} encoding")
    for url in descriptor.get("urls") or []:
        if not isinstance(url, str) or not _URI.match(url):
            errors.append(f"urls: {url!r} is not a URI")
    if "data" in descriptor:
        try:
            base64.b64decode(str(descriptor["data"]), validate=True)
        except binascii.Error:
            errors.append("data is not padded standard base64")
    return errors


def check_layout(layout: Path) -> dict[str, int]:
    """Validate an OCI layout dir: oci-layout, index.json and every manifest and config
    it reaches (nested indexes too), with blob digests and sizes checked.

    Returns how many documents of each kind were checked; raises AssertionError listing
    every problem found.
    """
    counts = {"layout": 0, "index": 0, "manifest": 0, "config": 0, "layer": 0}
    problems = validate(json.loads((layout / "oci-layout").read_text()), _LAYOUT)
    counts["layout"] += 1
    pending: list[tuple[str, Any]] = [(_INDEX, json.loads((layout / "index.json").read_text()))]
    while pending:
        media_type, doc = pending.pop()
        problems += [f"{media_type}: {p}" for p in validate(doc, media_type)]
        counts[_KINDS[media_type]] += 1
        for desc in _descriptors(doc, media_type):
            if desc is doc.get("subject"):
                continue
            data = _blob(layout, desc, problems)
            kind = desc.get("mediaType", "")
            if kind in (_INDEX, _MANIFEST, _CONFIG) and data is not None:
                pending.append((kind, json.loads(data)))
            elif data is not None:
                counts["layer"] += 1
    assert not problems, "\n".join(problems)
    return counts


_LAYOUT = "application/vnd.oci.layout.header.v1+json"
_INDEX = "application/vnd.oci.image.index.v1+json"
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_CONFIG = "application/vnd.oci.image.config.v1+json"
_KINDS = {_LAYOUT: "layout", _INDEX: "index", _MANIFEST: "manifest", _CONFIG: "config"}


def _blob(layout: Path, desc: dict[str, Any], problems: list[str]) -> bytes | None:
    algorithm, _, encoded = str(desc.get("digest", "")).partition(":")
    path = layout / "blobs" / algorithm / encoded
    if not path.is_file():
        problems.append(f"blob {desc.get('digest')} is missing")
        return None
    data = path.read_bytes()
    if hashlib.new(algorithm, data).hexdigest() != encoded:
        problems.append(f"blob {desc.get('digest')} does not match its digest")
    if len(data) != desc.get("size"):
        problems.append(f"blob {desc.get('digest')} is {len(data)} bytes, not {desc.get('size')}")
    return data
