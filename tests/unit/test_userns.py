"""Rootless id maps: subuid parsing, the choice between full and single mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import SandboxError
from runtime.snapshotter import choose
from runtime.userns import IdMap, in_initial_namespace, plan_mappings, subordinate_ranges


def _subid(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "subid"
    path.write_text(text)
    return path


def test_subordinate_ranges_match_by_name_or_uid_and_skip_junk(tmp_path: Path) -> None:
    path = _subid(
        tmp_path,
        "alice:100000:65536\nbob:200000:10\n1001:300000:5\nalice:bad:1\nalice:1:0\n# x\n",
    )
    assert subordinate_ranges(path, "alice", 1000) == ((100000, 65536),)
    assert subordinate_ranges(path, "carol", 1001) == ((300000, 5),)
    assert subordinate_ranges(tmp_path / "missing", "alice", 1000) == ()


def test_full_mapping_puts_the_user_at_zero_and_ranges_from_one(tmp_path: Path) -> None:
    sub = _subid(tmp_path, "alice:100000:65536\nalice:300000:10\n")
    plan = plan_mappings(1000, 1000, "alice", subuid=sub, subgid=sub, helpers=True)
    assert plan.full
    assert plan.uid_maps == (IdMap(0, 1000, 1), IdMap(1, 100000, 65536), IdMap(65537, 300000, 10))


def test_single_mapping_without_a_range_or_without_helpers(tmp_path: Path) -> None:
    sub = _subid(tmp_path, "alice:100000:65536\n")
    empty = _subid(tmp_path, "")
    no_range = plan_mappings(1000, 1001, "alice", subuid=empty, subgid=empty, helpers=True)
    assert not no_range.full
    assert no_range.uid_maps == (IdMap(0, 1000, 1),)
    assert no_range.gid_maps == (IdMap(0, 1001, 1),)
    no_helpers = plan_mappings(1000, 1000, "alice", subuid=sub, subgid=sub, helpers=False)
    assert not no_helpers.full


def test_identity_uid_map_is_the_initial_namespace(tmp_path: Path) -> None:
    host = _subid(tmp_path, "         0          0 4294967295\n")
    assert in_initial_namespace(host)
    inner = _subid(tmp_path, "         0       1000          1\n")
    assert not in_initial_namespace(inner)


@pytest.mark.parametrize(
    ("value", "usable", "expected"),
    [
        (None, True, "overlay"),
        (None, False, "copy"),
        ("copy", True, "copy"),
        ("OVERLAY", False, "overlay"),
    ],
)
def test_snapshotter_choice(value: str | None, usable: bool, expected: str) -> None:
    assert choose(value, overlay_usable=usable) == expected


def test_unknown_snapshotter_names_the_variable() -> None:
    with pytest.raises(SandboxError, match="PYBUILD_SNAPSHOTTER"):
        choose("zfs", overlay_usable=True)
