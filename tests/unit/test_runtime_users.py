"""docker USER resolution against a rootfs's /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import UserNotFound
from runtime.users import ResolvedUser, resolve_user

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000::/home/app:/bin/sh
# a comment line
broken:x:notanumber:1::/:/bin/sh
nobody:x:65534:65534::/nonexistent:/bin/false
nohome:x:1001:1001:::/bin/sh
"""
GROUP = """\
root:x:0:
wheel:x:10:root
app:x:1000:
staff:x:50:app,other
dev:x:60: app
nogroup:x:65534:
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", ResolvedUser(0, 0, (0, 10), "/root")),
        ("root", ResolvedUser(0, 0, (0, 10), "/root")),
        ("app", ResolvedUser(1000, 1000, (1000, 50, 60), "/home/app")),
        ("1000", ResolvedUser(1000, 1000, (1000, 50, 60), "/home/app")),
        ("app:staff", ResolvedUser(1000, 50, (50,), "/home/app")),
        ("app:10", ResolvedUser(1000, 10, (10,), "/home/app")),
        ("app:777", ResolvedUser(1000, 777, (777,), "/home/app")),
        ("4242", ResolvedUser(4242, 0, (0,), "/")),
        ("4242:4343", ResolvedUser(4242, 4343, (4343,), "/")),
        ("nobody", ResolvedUser(65534, 65534, (65534,), "/nonexistent")),
        ("nohome", ResolvedUser(1001, 1001, (1001,), "/")),
    ],
)
def test_user_spec_resolves_like_docker(root: Path, user: str, expected: ResolvedUser) -> None:
    assert resolve_user(root, user) == expected


def test_primary_gid_listed_among_member_groups_is_not_repeated(tmp_path: Path) -> None:
    # BuildKit's ensureAdditionalGids prepends the gid only when it is not listed yet.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("app:x:1000:50::/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("dev:x:60:app\nstaff:x:50:app\n")
    assert resolve_user(tmp_path, "app").groups == (60, 50)


def test_unknown_user_name_raises_with_hint(root: Path) -> None:
    with pytest.raises(UserNotFound, match="unable to find user ghost") as info:
        resolve_user(root, "ghost")
    assert info.value.hint


def test_unknown_group_name_raises(root: Path) -> None:
    with pytest.raises(UserNotFound, match="unable to find group ghosts"):
        resolve_user(root, "app:ghosts")


def test_out_of_range_uid_raises(root: Path) -> None:
    with pytest.raises(UserNotFound, match="out of range"):
        resolve_user(root, str(2**31))


def test_malformed_passwd_lines_are_skipped(root: Path) -> None:
    with pytest.raises(UserNotFound):
        resolve_user(root, "broken")


def test_missing_files_allow_numeric_ids_only(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "12:34") == ResolvedUser(12, 34, (34,), "/")
    assert resolve_user(tmp_path, "") == ResolvedUser(0, 0, (0,), "/")
    with pytest.raises(UserNotFound):
        resolve_user(tmp_path, "app")


def test_symlinked_passwd_is_resolved_inside_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "etc").mkdir(parents=True)
    (outside / "etc" / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "real").mkdir()
    (root / "real" / "passwd").write_text("inside:x:7:7::/in:/bin/sh\n")
    # An absolute link means <root>/..., never the host path of the same name.
    (root / "etc" / "passwd").symlink_to(str(outside / "etc" / "passwd"))
    with pytest.raises(UserNotFound):
        resolve_user(root, "evil")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("../../../../../real/passwd")
    assert resolve_user(root, "inside") == ResolvedUser(7, 7, (7,), "/in")
