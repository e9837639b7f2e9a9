"""The CLI's backstop: an exception no handler expects is an "internal error", not a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from builder.cli import images
from builder.cli.main import EXIT_INTERNAL_ERROR, main


def _broken(args: argparse.Namespace) -> int:
    raise ValueError("embedded null byte\nsecond line")


def test_an_unexpected_exception_becomes_an_internal_error_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PYBUILD_DEBUG", raising=False)
    monkeypatch.setattr(images, "cmd_images", _broken)
    assert main(["images"]) == EXIT_INTERNAL_ERROR == 70
    err = capsys.readouterr().err
    assert "pybuild: internal error: ValueError: embedded null byte\n" in err
    assert "report it" in err and "PYBUILD_DEBUG=1" in err
    assert "Traceback" not in err and "second line" not in err


def test_pybuild_debug_shows_the_traceback_of_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PYBUILD_DEBUG", "1")
    monkeypatch.setattr(images, "cmd_images", _broken)
    assert main(["images"]) == EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in _broken" in err
    assert "pybuild: internal error: ValueError" in err


def test_an_oserror_that_is_not_disk_full_is_an_internal_error_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise PermissionError(13, "Permission denied", "/x")

    monkeypatch.delenv("PYBUILD_DEBUG", raising=False)
    monkeypatch.setattr(images, "cmd_images", broken)
    assert main(["images"]) == EXIT_INTERNAL_ERROR
    assert "internal error: PermissionError" in capsys.readouterr().err


def test_interrupts_and_exits_are_not_internal_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "cmd_images", interrupted)
    assert main(["images"]) == 130
    with pytest.raises(SystemExit):
        main(["--no-such-flag"])


def test_a_reader_that_leaves_early_ends_the_cli_quietly_as_sigpipe_would(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # `pybuild images | head -0`: nobody reads what the CLI prints
    try:
        done = subprocess.run(
            [sys.executable, "-m", "builder.cli", "images"],
            env={**os.environ, "PYBUILD_ROOT": str(tmp_path / "store")},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""
