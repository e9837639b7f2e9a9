"""`pybuild run` of built and loaded images, with docker's flags and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def test_run_hello_fixture_prints_greeting(pybuild: Pybuild) -> None:
    pybuild.build(REPO / "fixtures" / "hello", "-t", "hello:1")
    result = pybuild("run", "--rm", "hello:1")
    assert "Hello from pybuild!" in result.out


def test_run_loaded_base_image_runs_command(pybuild: Pybuild) -> None:
    result = pybuild("run", "--rm", "busybox", "echo", "from", "busybox")
    assert result.out == "from busybox\n"


def test_run_exits_with_container_status(pybuild: Pybuild) -> None:
    result = pybuild("run", "busybox", "sh", "-c", "exit 42", ok=False)
    assert result.code == 42


def test_run_command_not_found_is_127(pybuild: Pybuild) -> None:
    result = pybuild("run", "busybox", "no-such-command", ok=False)
    assert result.code == 127
    assert "no-such-command" in result.err


def test_run_unknown_image_is_125(pybuild: Pybuild) -> None:
    result = pybuild("run", "missing:1", ok=False)
    assert result.code == 125
    assert "missing:1" in result.err and "Traceback" not in result.err


def test_run_applies_env_workdir_and_user_flags(pybuild: Pybuild) -> None:
    result = pybuild(
        "run",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp/work",
        "-u",
        "app",
        "busybox",
        "sh",
        "-c",
        'echo "$FOO $(pwd) $(id -u)"',
    )
    assert result.out == "bar /tmp/work 1000\n"


def test_run_uses_image_config_and_entrypoint_override(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {},
        "FROM busybox\nENV WHO=world\nWORKDIR /srv\n"
        'ENTRYPOINT ["/bin/sh", "-c"]\nCMD ["echo hello $WHO in $(pwd)"]\n',
    )
    pybuild.build(ctx, "-t", "cfg:1")
    assert pybuild("run", "cfg:1").out == "hello world in /srv\n"
    assert pybuild("run", "cfg:1", "echo override").out == "override\n"
    assert pybuild("run", "--entrypoint", "echo", "cfg:1", "plain").out == "plain\n"


def test_run_bind_mount_reads_host_dir(pybuild: Pybuild, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note").write_text("from host")
    result = pybuild("run", "-v", f"{shared}:/mnt/shared:ro", "busybox", "cat", "/mnt/shared/note")
    assert result.out == "from host"


def test_run_changes_do_not_persist_between_runs(pybuild: Pybuild) -> None:
    pybuild("run", "busybox", "sh", "-c", "echo x > /persist")
    result = pybuild("run", "busybox", "ls", "/persist", ok=False)
    assert result.code != 0
