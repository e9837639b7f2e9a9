"""`pybuild run --network`: host shares the host's interfaces, none leaves only loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def test_run_network_host_sees_the_hosts_interfaces(pybuild: Pybuild) -> None:
    out = pybuild("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net").out
    assert set(out.split()) == set(os.listdir("/sys/class/net"))
    assert len(out.split()) > 1  # more than lo, unlike --network none


def test_run_network_none_sees_only_loopback(pybuild: Pybuild, tmp_path: Path) -> None:
    out = pybuild("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").out
    assert out.split() == ["lo"]
