"""CLI-level fixtures: a store with the busybox base loaded, and a way to run pybuild."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild

sys.path.insert(0, str(REPO / "fixtures"))

from make_base import make_base


@pytest.fixture(scope="session")
def base_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("base") / "busybox.tar"
    make_base(out, "docker", "busybox:latest")
    return out


@pytest.fixture
def pybuild(store_root: Path, base_archive: Path) -> Pybuild:
    """A fresh store with busybox:latest loaded."""
    cli = Pybuild(store_root)
    cli("load", "-i", base_archive)
    return cli


@pytest.fixture(scope="session")
def debian_archive() -> Path:
    """The Debian base (python3, pip, CA certificates) as ``debian-py:bookworm``: see
    tests/integration/debian_base.py (made once per machine, skips with the reason)."""
    from tests.integration.debian_base import debian_base_archive

    return debian_base_archive()
