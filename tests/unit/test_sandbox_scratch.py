"""A sandbox's scratch dir: private while the run lasts, gone with all it holds after."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest

from runtime.rootsetup import SCRATCH_PREFIX, scratch_dir


def test_the_scratch_dir_is_private_and_removed_with_its_content(tmp_path: Path) -> None:
    with scratch_dir(tmp_path) as scratch:
        assert scratch.parent == tmp_path and scratch.name.startswith(SCRATCH_PREFIX)
        assert stat.S_IMODE(scratch.stat().st_mode) == 0o700
        (scratch / "root").mkdir()
        (scratch / "hosts").write_text("127.0.0.1 localhost\n")
    assert list(tmp_path.iterdir()) == []


def test_each_run_gets_a_scratch_dir_of_its_own(tmp_path: Path) -> None:
    with scratch_dir(tmp_path) as first, scratch_dir(tmp_path) as second:
        assert first != second


def test_the_scratch_dir_is_removed_when_the_run_fails(tmp_path: Path) -> None:
    with pytest.raises(OSError), scratch_dir(tmp_path) as scratch:
        (scratch / "resolv.conf").write_text("")
        raise OSError("no space left")
    assert list(tmp_path.iterdir()) == []


def test_without_a_parent_the_scratch_dir_is_in_the_system_temp_dir() -> None:
    with scratch_dir(None) as scratch:
        assert scratch.parent == Path(tempfile.gettempdir())
    assert not scratch.exists()
