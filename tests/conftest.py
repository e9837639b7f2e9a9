"""Shared test set-up: tests never touch the user's real store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the default store at a path that fails loudly if anything uses it."""
    poison = tmp_path_factory.getbasetemp() / "NOT-A-STORE"
    old = {k: os.environ.get(k) for k in ("PYBUILD_ROOT", "XDG_DATA_HOME", "HOME")}
    os.environ.pop("PYBUILD_ROOT", None)
    os.environ["XDG_DATA_HOME"] = str(poison)
    poison.write_text("tests must pass an explicit store root\n")
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    """A fresh, empty pybuild store root for one test."""
    root = tmp_path / "store"
    root.mkdir()
    return root


def _overlay_available() -> bool:
    try:
        return "overlay" in Path("/proc/filesystems").read_text()
    except OSError:
        return False


def _docker_available() -> bool:
    import subprocess

    from tests.docker_cli import docker_cli

    cli = docker_cli()
    if cli is None:
        return False
    try:
        done = subprocess.run([cli, "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _qemu_arm64_available() -> bool:
    """An arm64 emulator registered with binfmt_misc with the F flag (scripts/install)."""
    from runtime.emulation import BINFMT_MISC, emulated_architectures

    return "arm64" in emulated_architectures(BINFMT_MISC)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip marked tests with the reason, never silently."""
    checks = {
        "requires_root": (lambda: os.geteuid() == 0, "needs root (namespaces and mounts)"),
        "requires_overlay": (_overlay_available, "needs overlayfs (not in /proc/filesystems)"),
        "requires_docker": (_docker_available, "needs a running dockerd (`docker info` failed)"),
        "requires_qemu": (
            _qemu_arm64_available,
            "needs QEMU arm64 emulation: qemu-user-static registered with binfmt_misc with "
            "the F flag (scripts/install does it; binfmt_misc must be mountable)",
        ),
    }
    results: dict[str, bool] = {}
    for item in items:
        for name, (check, reason) in checks.items():
            if item.get_closest_marker(name) is None:
                continue
            if name not in results:
                results[name] = check()
            if not results[name]:
                item.add_marker(pytest.mark.skip(reason=reason))


_CONFORMANCE = pytest.StashKey[dict[str, list[int]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_CONFORMANCE] = {}


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Count each conformance case once, by corpus: passed, and run at all."""
    marker = item.get_closest_marker("conformance")
    if marker is None or call.when != "call":
        return
    counts = item.config.stash[_CONFORMANCE].setdefault(str(marker.args[0]), [0, 0])
    counts[0] += call.excinfo is None
    counts[1] += 1


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print the pass count of every conformance corpus the run touched."""
    counts = config.stash.get(_CONFORMANCE, {})
    if not counts:
        return
    terminalreporter.section("conformance (../shared/conformance)")
    for corpus, (passed, ran) in sorted(counts.items()):
        terminalreporter.write_line(f"{corpus}: {passed}/{ran} passed")
