"""`pybuild run` flags of docker's: --tmpfs, --read-only, --env-file, --hostname,
--add-host, named volumes, and docker's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def sh(pybuild: Pybuild, *flags: str, script: str, ok: bool = True) -> str:
    return pybuild("run", *flags, "busybox", "sh", "-c", script, ok=ok).out


def test_tmpfs_is_mounted_with_size_and_mode(pybuild: Pybuild) -> None:
    out = sh(
        pybuild,
        "--tmpfs",
        "/scratch:size=8m,mode=700",
        script="stat -c %a /scratch; grep ' /scratch ' /proc/mounts",
    )
    mode, mount = out.splitlines()
    assert mode == "700"
    assert mount.startswith("tmpfs /scratch tmpfs") and "size=8192k" in mount


def test_read_only_root_refuses_writes_but_tmpfs_is_writable(pybuild: Pybuild) -> None:
    out = sh(
        pybuild,
        "--read-only",
        "--tmpfs",
        "/tmp",
        script="touch /x 2>&1 || echo refused; touch /tmp/y && echo tmp-ok",
    )
    assert "Read-only file system" in out and "refused" in out and "tmp-ok" in out


def test_env_file_sets_variables_and_e_overrides_them(pybuild: Pybuild, tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text("# settings\nA=from-file\nB=keep\n")
    out = sh(pybuild, "--env-file", str(env), "-e", "A=from-flag", script='echo "$A $B"')
    assert out == "from-flag keep\n"


def test_hostname_and_add_host(pybuild: Pybuild) -> None:
    out = sh(
        pybuild,
        "--hostname",
        "box1",
        "--add-host",
        "db:10.1.2.3",
        script="hostname; grep db /etc/hosts; grep box1 /etc/hosts | head -1",
    )
    assert out.splitlines() == ["box1", "10.1.2.3\tdb", "127.0.0.1\tlocalhost box1"]


def test_named_volume_persists_between_runs(pybuild: Pybuild) -> None:
    sh(pybuild, "-v", "appdata:/data", script="echo kept > /data/file")
    assert sh(pybuild, "-v", "appdata:/data:ro", script="cat /data/file") == "kept\n"
    assert (pybuild.root / "volumes" / "appdata" / "_data" / "file").read_text() == "kept\n"


def test_not_executable_is_126(pybuild: Pybuild) -> None:
    result = pybuild("run", "busybox", "/etc/passwd", ok=False)
    assert result.code == 126 and "permission denied" in result.err


def test_bad_flag_value_is_125_without_traceback(pybuild: Pybuild) -> None:
    result = pybuild("run", "--tmpfs", "relative", "busybox", "true", ok=False)
    assert result.code == 125 and "Traceback" not in result.err
    assert "--tmpfs relative: the path must be absolute" in result.err
