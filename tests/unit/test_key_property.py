"""Key correctness as a property: a COPY step's key is unchanged exactly when what it
reads is unchanged in what counts (path, type, mode, owner, link target, content).

Random edits (see test_key_property_model.py) are applied to a small context; after
each, the real key functions (BuildContext.fingerprint via builder.ops.copy.key_inputs, then
cache.keys.step_key) are compared with an oracle written without builder.ops.context. A
miss must also be explained by naming only files that really changed.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import builder.ops.contextwalk
from builder.ops import copy
from builder.ops.base import ExecContext
from builder.ops.context import BuildContext, ContextEntry
from builder.plan.specs import CopySpec
from cache.keys import KeyInputs, explain_miss, step_key
from tests.unit.test_key_property_model import (
    SOURCES,
    Edit,
    apply,
    changed_paths,
    edits,
    read_view,
    write_model_context,
)

_PARENT = "image:sha256:" + "ab" * 32
_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _inputs(root: Path, source: str) -> KeyInputs:
    spec = CopySpec(sources=(source,), dest="/dst/", from_stage=None, chown=None, chmod=None)
    ctx = ExecContext(BuildContext(root), sandbox=None, scratch=root)  # type: ignore[arg-type]
    return copy.key_inputs(spec, _PARENT, f"COPY {source} /dst/", ctx)


def _file_names(reasons: list[str]) -> set[str]:
    # "file app/x.py changed (mode)", "symlink app/link added", "directory app removed"
    return {r.split(" ")[1] for r in reasons if r.split(" ")[0] in ("file", "symlink", "directory")}


def check_edits(edit_list: list[Edit]) -> None:
    """Apply the edits one by one; after each, key equality must match the oracle."""
    with tempfile.TemporaryDirectory() as tmp:
        root = write_model_context(Path(tmp) / "ctx")
        before = {s: (_inputs(root, s), read_view(root, s)) for s in SOURCES}
        for edit in edit_list:
            apply(root, edit)
            for source in SOURCES:
                old_inputs, old_view = before[source]
                new_inputs, new_view = _inputs(root, source), read_view(root, source)
                same_key = step_key(old_inputs) == step_key(new_inputs)
                changed = changed_paths(old_view, new_view)
                assert same_key == (not changed), (
                    f"COPY {source} after {edit}: key {'hit' if same_key else 'missed'} "
                    f"but the files it reads changed: {sorted(changed)}"
                )
                if changed:
                    reasons = explain_miss(old_inputs, new_inputs)
                    assert reasons, f"COPY {source} missed without a reason"
                    if len(changed) <= 3:  # all named; beyond, the first three and a count
                        assert _file_names(reasons) == changed, (source, edit, reasons)
                    else:
                        assert _file_names(reasons) <= changed and "more file" in reasons[-1]
                before[source] = (new_inputs, new_view)


@_SETTINGS
@given(edits())
def test_copy_key_hits_exactly_when_the_files_it_reads_are_unchanged(
    edit_list: list[Edit],
) -> None:
    check_edits(edit_list)


def _drop(field: str, value: object) -> Callable[[str, Path, object], ContextEntry]:
    real = builder.ops.contextwalk.make_entry

    def entry(rel: str, path: Path, st: object) -> ContextEntry:
        return dataclasses.replace(real(rel, path, st), **{field: value})  # type: ignore[arg-type]

    return entry


@pytest.mark.parametrize(("field", "value"), [("mode", 0o644), ("link_target", None)])
def test_property_fails_when_a_field_is_dropped_from_the_fingerprint(
    monkeypatch: pytest.MonkeyPatch, field: str, value: object
) -> None:
    """The property test can fail: with a field left out of the key it finds a false hit."""
    monkeypatch.setattr(builder.ops.contextwalk, "make_entry", _drop(field, value))
    falsified = settings(_SETTINGS, max_examples=500, print_blob=False)(given(edits())(check_edits))
    with pytest.raises(AssertionError, match="key hit but the files it reads changed"):
        falsified()


def test_touch_only_keeps_the_key_and_content_change_of_the_same_size_misses(
    tmp_path: Path,
) -> None:
    root = write_model_context(tmp_path / "ctx")
    first = step_key(_inputs(root, "app/"))
    apply(root, Edit("touch", 0, 7))
    assert step_key(_inputs(root, "app/")) == first
    (root / "app" / "main.py").write_text("print('MAIN')\n")
    assert step_key(_inputs(root, "app/")) != first
