"""--chmod parsing and application, octal and symbolic (chmod(1) as BuildKit applies it)."""

from __future__ import annotations

import pytest

from builder.errors import DockerfileError
from builder.ops.copyfiles import CopyOptions
from builder.plan.chmod import parse_chmod


@pytest.mark.parametrize(
    ("spec", "before", "is_dir", "after"),
    [
        ("0755", 0o600, False, 0o755),
        ("u+x", 0o644, False, 0o744),
        ("u+x,g=r", 0o664, False, 0o744),
        ("a-w", 0o666, False, 0o444),
        ("o=", 0o777, True, 0o770),
        ("+x", 0o644, False, 0o755),
        ("a+X", 0o644, False, 0o644),
        ("a+X", 0o744, False, 0o755),
        ("a+X", 0o644, True, 0o755),
        ("g=u", 0o740, False, 0o770),
        ("u+s,o+t", 0o755, False, 0o5755),
    ],
)
def test_chmod_applies_like_chmod_1(spec: str, before: int, is_dir: bool, after: int) -> None:
    assert parse_chmod(spec).apply(before, is_dir) == after


@pytest.mark.parametrize("spec", ["", "u+q", "9", "17777", "x+u", "u+x,,g+r"])
def test_chmod_refuses_bad_modes(spec: str) -> None:
    with pytest.raises(DockerfileError):
        parse_chmod(spec)


@pytest.mark.parametrize(
    ("spec", "dir_mode"),
    [(None, 0o755), ("770", 0o770), ("4755", 0o755), ("0640", 0o640), ("u+x", 0o755)],
)
def test_created_dirs_take_an_octal_chmods_permission_bits(spec: str | None, dir_mode: int) -> None:
    # fsutil MkdirAll(CopyInfo.Mode): only an octal --chmod sets Mode, and Go's
    # os.Chmod keeps only its permission bits.
    opts = CopyOptions(chmod=parse_chmod(spec) if spec else None)
    assert opts.dir_mode == dir_mode


def test_created_dirs_are_root_owned_without_chown() -> None:
    assert CopyOptions(owner=None).dir_owner == (0, 0)
    assert CopyOptions(owner=(5, 6)).dir_owner == (0, 0)
    assert CopyOptions(owner=(5, 6), chown_parents=True).dir_owner == (5, 6)
