"""Validate OCI runtime documents against the runtime-spec JSON schemas in ../shared.

Wiring as that folder's README describes: draft-04, no ``id``s, every ``$ref`` a file
name relative to the schema's own folder, so each file is registered under its
``file://`` URL and validation starts from ``{"$ref": <entry point URL>}``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SCHEMA_DIR = Path(__file__).resolve().parents[1].parent / "shared/conformance/oci-runtime-spec"
KINDS = ("config", "features", "state")  # each has <kind>-schema.json and test/<kind>/


@functools.cache
def validator(kind: str = "config") -> Draft4Validator:
    """A validator for ``<kind>-schema.json`` with every schema file registered."""
    registry: Registry[Any] = Registry()
    for path in SCHEMA_DIR.glob("*.json"):
        body = json.loads(path.read_text())
        resource = Resource.from_contents(body, default_specification=DRAFT4)
        registry = registry.with_resource(path.resolve().as_uri(), resource)
    main = (SCHEMA_DIR / f"{kind}-schema.json").resolve().as_uri()
    return Draft4Validator({"$ref": main}, registry=registry)


def schema_errors(document: Any, kind: str = "config") -> list[str]:
    """Every schema violation of ``document`` as a message; [] when it is valid."""
    return [e.message for e in validator(kind).iter_errors(document)]
