"""Container paths: normalised without leaving the root, even through symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.rootpath import clean, resolve_in_root


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", "/"),
        ("a/../b", "/b"),
        ("/x/", "/x"),
        ("..", "/"),
        ("//src", "/src"),
        ("///a//b", "/a/b"),
    ],
)
def test_clean_gives_one_absolute_normal_path(given: str, expected: str) -> None:
    assert clean(given) == expected


def test_absolute_link_resolves_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    os.symlink("/bin", tmp_path / "usrbin")
    assert resolve_in_root(tmp_path, "/usrbin/sh") == tmp_path / "bin" / "sh"


def test_dotdot_link_never_climbs_above_the_root(tmp_path: Path) -> None:
    os.symlink("../../../etc", tmp_path / "escape")
    assert resolve_in_root(tmp_path, "/escape/passwd") == tmp_path / "etc" / "passwd"


def test_final_link_is_kept_when_not_followed(tmp_path: Path) -> None:
    os.symlink("/target", tmp_path / "link")
    assert resolve_in_root(tmp_path, "/link", follow_last=False) == tmp_path / "link"
