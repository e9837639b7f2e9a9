"""Miss reasons counted by kind: every per-file reason is a source change."""

from __future__ import annotations

import pytest

from builder.cli.cache_history import reason_kinds


@pytest.mark.parametrize(
    "reason",
    [
        "file /wheels/app.whl changed (content)",
        "directory /opt/app changed (mode); and 3 more files",
        "symlink /c/link changed (link target)",
        "stage 1 it copies from changed",
        "source mount:/c changed",
    ],
)
def test_per_file_and_source_reasons_are_source_changes(reason: str) -> None:
    assert reason_kinds(reason) == {"source"}


def test_a_parent_miss_with_a_file_change_counts_both() -> None:
    assert reason_kinds("parent step missed; file /o/a.txt changed (content)") == {
        "parent",
        "source",
    }
