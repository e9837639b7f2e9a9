"""The runtime-spec schema wiring gives upstream's verdict on every upstream sample.

Upstream's convention: each ``test/<kind>/good/*.json`` validates against
``<kind>-schema.json`` and each ``test/<kind>/bad/*.json`` does not (``invalid-json.json``
is not JSON at all). Our bundle tests trust this validator, so it must agree first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runtime_schema import KINDS, SCHEMA_DIR, schema_errors


def _samples() -> list[tuple[str, str, Path]]:
    return [
        (kind, verdict, path)
        for kind in KINDS
        for verdict in ("good", "bad")
        for path in sorted((SCHEMA_DIR / "test" / kind / verdict).glob("*.json"))
    ]


SAMPLES = _samples()


@pytest.mark.skipif(not SCHEMA_DIR.is_dir(), reason="no ../shared/conformance/oci-runtime-spec")
def test_every_upstream_sample_is_found() -> None:
    assert len(SAMPLES) == 19  # the folder's README: 14 good, 5 bad


@pytest.mark.conformance("oci-runtime-spec test/ samples")
@pytest.mark.parametrize(
    ("kind", "verdict", "path"), SAMPLES, ids=[f"{k}/{v}/{p.name}" for k, v, p in SAMPLES]
)
def test_upstream_sample_gets_upstreams_verdict(kind: str, verdict: str, path: Path) -> None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        assert verdict == "bad", f"{path.name} is not JSON but sits under good/"
        return
    errors = schema_errors(document, kind)
    if verdict == "good":
        assert errors == [], f"{path.name}: {errors}"
    else:
        assert errors, f"{path.name} should fail {kind}-schema.json"
