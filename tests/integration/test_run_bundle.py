"""`pybuild bundle IMAGE DIR` and `pybuild run --runtime runc`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild
from tests.integration.test_runc_bundle import schema_errors

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]
needs_runc = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")


def test_bundle_has_a_valid_config_and_the_images_rootfs(pybuild: Pybuild, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    pybuild("bundle", "busybox", bundle, "echo", "hi")
    config = json.loads((bundle / "config.json").read_text())
    assert schema_errors(config) == []
    assert config["root"]["path"] == "rootfs"
    assert config["process"]["args"] == ["echo", "hi"]
    assert (bundle / "rootfs" / "bin" / "busybox").is_file()


def test_bundle_refuses_a_non_empty_directory(pybuild: Pybuild, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = pybuild("bundle", "busybox", tmp_path / "full", ok=False)
    assert result.code != 0 and "not empty" in result.err and "Traceback" not in result.err


@needs_runc
def test_runc_runs_the_bundle(pybuild: Pybuild, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    pybuild("bundle", "busybox", bundle, "sh", "-c", "echo from-runc; id -u")
    done = subprocess.run(
        ["runc", "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle), "t-bundle"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "from-runc\n0\n"


@needs_runc
def test_run_with_runtime_runc_gives_output_flags_and_exit_code(pybuild: Pybuild) -> None:
    result = pybuild(
        "run",
        "--runtime",
        "runc",
        "--hostname",
        "rc",
        "-e",
        "X=1",
        "busybox",
        "sh",
        "-c",
        'echo "$(hostname) $X"; exit 4',
        ok=False,
    )
    assert result.code == 4
    assert result.out == "rc 1\n"
    assert not any((pybuild.root / "containers").iterdir())
