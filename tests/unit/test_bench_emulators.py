"""The benchmark turns binfmt_misc off for its run and always back on."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import emulators


def _status(tmp_path: Path, value: str) -> Path:
    status = tmp_path / "status"
    status.write_text(value)
    return status


def test_paused_turns_binfmt_off_inside_and_back_on_after(tmp_path: Path) -> None:
    status = _status(tmp_path, "enabled\n")
    with emulators.paused(status) as off:
        assert off is True
        assert status.read_text() == "0"
    assert status.read_text() == "1"


def test_paused_restores_binfmt_when_the_run_fails(tmp_path: Path) -> None:
    status = _status(tmp_path, "enabled\n")
    with pytest.raises(RuntimeError), emulators.paused(status):
        raise RuntimeError("a build failed")
    assert status.read_text() == "1"


def test_paused_leaves_disabled_or_missing_binfmt_alone(tmp_path: Path) -> None:
    status = _status(tmp_path, "disabled\n")
    with emulators.paused(status) as off:
        assert off is False
    assert status.read_text() == "disabled\n"
    with emulators.paused(tmp_path / "absent") as off:
        assert off is False
    assert not (tmp_path / "absent").exists()
