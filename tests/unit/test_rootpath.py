"""Container paths: normalised without leaving the root, even through symlinks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.ops.rootpath import make_dirs, resolve_in_root
from builder.plan.paths import clean


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


def test_make_dirs_creates_a_dangling_links_target_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/opt/app", root / "app")
    os.symlink("/../../outside", root / "climb")
    me = (os.getuid(), os.getgid())
    make_dirs(root, resolve_in_root(root, "/app/sub"), 0o750, me)
    make_dirs(root, resolve_in_root(root, "/climb/x"), 0o700, me)
    assert os.readlink(root / "app") == "/opt/app"
    assert (root / "opt" / "app" / "sub").is_dir()
    assert stat.S_IMODE(os.lstat(root / "opt").st_mode) == 0o750
    assert (root / "outside" / "x").is_dir()
    assert not (tmp_path / "outside").exists()


def test_make_dirs_leaves_existing_dirs_and_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "keep").mkdir(mode=0o711)
    (tmp_path / "file").write_text("x")
    me = (os.getuid(), os.getgid())
    make_dirs(tmp_path, tmp_path / "keep" / "new", 0o700, me)
    assert stat.S_IMODE(os.lstat(tmp_path / "keep").st_mode) == 0o711
    with pytest.raises(BuildError, match="/file exists and is not a directory"):
        make_dirs(tmp_path, tmp_path / "file" / "sub", 0o700, me)
