"""``pybuild run`` wiring: stdio inheritance, /dev/null stdin, the pty proxy, signal relay."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.rootfs import overlay_supported
from runtime.run import run_container
from runtime.spec import BindMount, ContainerSpec
from tests.integration.busybox_rootfs import fresh_rootfs, make_busybox_rootfs

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts"),
    pytest.mark.skipif(not overlay_supported(), reason="kernel has no overlayfs"),
]


@pytest.fixture(scope="module")
def lower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox"))


@pytest.fixture
def stdin_text(request: pytest.FixtureRequest) -> Iterator[None]:
    """Replace our fd 0 with a pipe holding ``request.param``."""
    read_end, write_end = os.pipe()
    os.write(write_end, request.param.encode())
    os.close(write_end)
    saved = os.dup(0)
    os.dup2(read_end, 0)
    os.close(read_end)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def sh(lower: Path, tmp: Path, script: str) -> ContainerSpec:
    return ContainerSpec(fresh_rootfs(tmp, (lower,)), ("sh", "-c", script), env=("PATH=/bin",))


def test_output_goes_to_our_stdout(
    lower: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_container(
        sh(lower, tmp_path, "echo out; echo err >&2"), interactive=False, tty=False
    )
    captured = capfd.readouterr()
    assert (result.exit_code, captured.out, captured.err) == (0, "out\n", "err\n")


@pytest.mark.parametrize("stdin_text", ["ignored\n"], indirect=True)
@pytest.mark.usefixtures("stdin_text")
def test_stdin_is_dev_null_unless_interactive(
    lower: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_container(sh(lower, tmp_path, "cat; echo end"), interactive=False, tty=False)
    assert capfd.readouterr().out == "end\n"


@pytest.mark.parametrize("stdin_text", ["typed\n"], indirect=True)
@pytest.mark.usefixtures("stdin_text")
def test_interactive_reads_our_stdin(
    lower: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_container(sh(lower, tmp_path, "cat"), interactive=True, tty=False)
    assert capfd.readouterr().out == "typed\n"


def test_tty_output_comes_through_the_pty(
    lower: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = sh(lower, tmp_path, "test -t 1 && echo on-a-tty; exit 4")
    result = run_container(spec, interactive=False, tty=True)
    assert result.exit_code == 4
    assert capfd.readouterr().out == "on-a-tty\r\n"  # the pty's ONLCR, as with docker -t


@pytest.mark.parametrize("stdin_text", ["echo from-stdin\nexit 5\n"], indirect=True)
@pytest.mark.usefixtures("stdin_text")
def test_interactive_tty_proxies_our_input(
    lower: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_container(sh(lower, tmp_path, "exec sh"), interactive=True, tty=True)
    assert result.exit_code == 5
    assert "from-stdin\r\n" in capfd.readouterr().out


def test_sigterm_to_us_is_relayed_to_the_container(lower: Path, tmp_path: Path) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    script = "trap 'exit 7' TERM; touch /flags/ready; while true; do sleep 0.05; done"
    spec = dataclasses.replace(sh(lower, tmp_path, script), mounts=(BindMount(flags, "/flags"),))

    def terminate_when_ready() -> None:
        deadline = time.monotonic() + 20
        while not (flags / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)  # after the deadline: fails instead of hanging

    threading.Thread(target=terminate_when_ready, daemon=True).start()
    result = run_container(spec, interactive=False, tty=False)
    assert result.exit_code == 7
