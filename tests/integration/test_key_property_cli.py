"""Key correctness through the CLI: after random context edits, each COPY step of a real
build is cached exactly when what it reads (path, type, mode, owner, link target,
content) equals what it read in some earlier build: a rebuild reuses any result it has.

One store and one context live through all examples (each example edits the context
left by the one before and rebuilds once), so the persistent stat cache is exercised
as well: files older than its two-second guard are not re-read unless their stat moved.
The unit test (tests/unit/test_key_property.py) runs hundreds of examples against the
key functions; this one runs a few dozen real builds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.integration.clihelp import Pybuild, steps_of
from tests.unit.test_key_property_model import (
    SOURCES,
    Edit,
    apply,
    edits,
    read_view,
    write_model_context,
)

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

# Every COPY starts from the base, so whether it hits depends on its own sources only.
DOCKERFILE = """FROM busybox AS whole
COPY app/ /app/
FROM busybox AS py
COPY app/*.py /py/
FROM busybox
COPY requirements.txt /requirements.txt
COPY --from=whole /app /app
COPY --from=py /py /py
"""


def _cached_by_source(meta: Path) -> dict[str, bool]:
    steps = {s["instruction"]: bool(s["cached"]) for s in steps_of(meta)}
    return {source: steps[f"COPY {source} /{_dest(source)}"] for source in SOURCES}


def _frozen(view: dict[str, object]) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(view.items()))


def _dest(source: str) -> str:
    return {"app/": "app/", "app/*.py": "py/"}.get(source, source)


def test_cli_rebuild_hits_exactly_when_copied_files_are_unchanged(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    root = write_model_context(tmp_path / "ctx", DOCKERFILE)
    meta = tmp_path / "meta.json"
    pybuild.build(root, "--metadata-file", meta)
    assert not any(_cached_by_source(meta).values())
    # A rebuild may also hit a result built before the last build: every state built.
    built = {s: {_frozen(read_view(root, s))} for s in SOURCES}

    @settings(
        max_examples=16,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # the examples share one context: nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    @given(edits(max_size=3))
    def rebuild_after(edit_list: list[Edit]) -> None:
        for edit in edit_list:
            apply(root, edit)
        pybuild.build(root, "--metadata-file", meta)
        cached = _cached_by_source(meta)
        for source in SOURCES:
            view = _frozen(read_view(root, source))
            assert cached[source] == (view in built[source]), (
                f"COPY {source} after {[str(e) for e in edit_list]}: "
                f"{'hit' if cached[source] else 'missed'}; what it reads now: {view}"
            )
            built[source].add(view)

    rebuild_after()
