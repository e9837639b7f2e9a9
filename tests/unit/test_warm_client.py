"""The warm builder's pure parts: which store a command names, and the code fingerprint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from builder.cli.warm_client import store_root, try_warm
from builder.cli.warm_server import fingerprint, shown


def test_store_root_is_the_last_leading_root_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYBUILD_ROOT", "/env/root")
    assert store_root(["--root", "/a", "--root", "/b", "build", "."]) == Path("/b")
    assert store_root(["build", "--root", "/not-global", "."]) == Path("/env/root")
    assert store_root(["-t", "x", "."]) == Path("/env/root")


def test_no_warm_builder_means_the_command_runs_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path))
    assert try_warm(["build", "."]) is None
    (tmp_path / "warm.sock").write_text("")  # not a socket anyone listens on
    assert try_warm(["build", "."]) is None
    monkeypatch.setenv("PYBUILD_NO_WARM", "1")
    assert try_warm(["build", "."]) is None


def test_fingerprint_changes_when_a_loaded_module_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "warm_probe_module.py"
    module.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("warm_probe_module")
    try:
        before = fingerprint(["warm_probe_module"])
        assert fingerprint(["warm_probe_module"]) == before
        module.write_text("X = 22\n")
        os.utime(module, ns=(1, 1))
        assert fingerprint(["warm_probe_module"]) != before
    finally:
        sys.modules.pop("warm_probe_module", None)


def test_the_warm_builders_log_leaves_build_argument_values_out() -> None:
    argv = ["build", "--build-arg", "TOKEN=s3cret", "--build-arg=KEY=v=1", "--build-arg", "X", "."]
    assert shown(argv) == [
        "build", "--build-arg", "TOKEN=...", "--build-arg=KEY=...", "--build-arg", "X", ".",
    ]  # fmt: skip
