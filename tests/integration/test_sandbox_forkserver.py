"""Sandboxes started through ``runtime.forkserver``: the same outcomes as a fresh init,
concurrent launches, and nothing left behind when the server or its client dies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.errors import SandboxError, UserNotFound
from runtime.forkclient import ForkServer
from runtime.rootfs import overlay_supported
from runtime.sandbox import Sandbox, start
from runtime.sandboxes import Sandboxes
from runtime.spec import ContainerSpec, RunResult
from tests.integration.busybox_rootfs import fresh_rootfs, make_busybox_rootfs

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts"),
    pytest.mark.skipif(not overlay_supported(), reason="kernel has no overlayfs"),
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox"))


@pytest.fixture
def server() -> Iterator[ForkServer]:
    with ForkServer() as fork_server:
        yield fork_server


def _sh(lower: Path, tmp: Path, script: str, **fields: object) -> ContainerSpec:
    tmp.mkdir(parents=True, exist_ok=True)
    return ContainerSpec(
        rootfs=fresh_rootfs(tmp, (lower,)),
        args=("sh", "-c", script),
        env=("PATH=/bin",),
        scratch=tmp,
        **fields,  # type: ignore[arg-type]
    )


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    """Running, not a zombie its new parent has yet to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _running(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip() == marker.encode():
                    return True
            except OSError:
                continue
    return False


def _gone(marker: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while _running(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _ready(box_out: int) -> None:
    with os.fdopen(box_out) as out:
        assert out.readline() == "ready\n"


def _started(
    lower: Path, tmp: Path, server: ForkServer, script: str, *, setup: str = ""
) -> Sandbox:
    """A sandbox running ``script`` after ``setup`` and printing "ready" (waited for
    here): a trap in ``setup`` is set before the test signals (a signal PID 1 has no
    handler for is dropped, not delivered later)."""
    read_end, write_end = os.pipe()
    script = f"{setup}echo ready; {script}"
    box = start(_sh(lower, tmp, script), stdout=write_end, server=server)
    os.close(write_end)
    _ready(read_end)
    return box


def test_exit_status_output_and_setup_errors_are_as_without_server(
    lower: Path, tmp_path: Path, server: ForkServer
) -> None:
    with tempfile.TemporaryFile() as out:
        box = start(
            _sh(lower, tmp_path / "a", "echo hi; exit 3"), stdout=out.fileno(), server=server
        )
        assert box.wait() == RunResult(exit_code=3, signal=None, error=None)
        out.seek(0)
        assert out.read() == b"hi\n"
    missing = ContainerSpec(fresh_rootfs(tmp_path, (lower,)), ("no-such-cmd",), env=("PATH=/bin",))
    result = start(missing, server=server).wait()
    assert (result.exit_code, result.error) == (
        127,
        'exec: "no-such-cmd": executable file not found in $PATH',
    )
    with pytest.raises(UserNotFound, match="nobody-here"):
        start(_sh(lower, tmp_path / "b", "true", user="nobody-here"), server=server).wait()


def test_inits_are_forked_by_one_server_not_by_us(
    lower: Path, tmp_path: Path, server: ForkServer
) -> None:
    first = _started(lower, tmp_path / "a", server, "sleep 30")
    second = _started(lower, tmp_path / "b", server, "sleep 30")
    try:
        assert _parent(first.pid) == _parent(second.pid) != os.getpid()
    finally:
        for box in (first, second):
            box.kill()
            box.wait()


def test_two_threads_run_through_the_server_at_once(lower: Path, tmp_path: Path) -> None:
    results: dict[int, RunResult | BaseException] = {}
    with Sandboxes() as boxes:

        def run(code: int) -> None:
            try:
                spec = _sh(lower, tmp_path / str(code), f"sleep 0.3; exit {code}")
                results[code] = boxes.run(spec)
            except BaseException as exc:  # the test inspects it
                results[code] = exc

        threads = [threading.Thread(target=run, args=(code,)) for code in (3, 5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {3: RunResult(3, None, None), 5: RunResult(5, None, None)}


def test_sigterm_is_forwarded_and_kill_kills(
    lower: Path, tmp_path: Path, server: ForkServer
) -> None:
    trapped = _started(
        lower, tmp_path / "a", server, "while :; do sleep 0.05; done", setup="trap 'exit 42' TERM; "
    )
    trapped.send_signal(signal.SIGTERM)
    assert trapped.wait().exit_code == 42
    assert not trapped.running()
    trapped.send_signal(signal.SIGTERM)  # reaped: nothing to signal, no error
    sleeper = _started(lower, tmp_path / "b", server, "exec sleep 30")
    sleeper.kill()
    assert sleeper.wait().signal == signal.SIGKILL


def test_a_killed_server_fails_its_sandboxes_and_later_starts_clearly(
    lower: Path, tmp_path: Path, server: ForkServer
) -> None:
    seconds = random.randrange(5000, 6000)
    box = _started(lower, tmp_path / "a", server, f"exec sleep {seconds}")
    os.kill(_parent(box.pid), signal.SIGKILL)
    with pytest.raises(SandboxError, match="the sandbox server exited while the sandbox ran"):
        box.wait()
    with pytest.raises(SandboxError, match="the sandbox server exited while the sandbox ran"):
        box.wait()  # the same outcome again
    assert _gone(f"sleep {seconds}", within=5)
    with pytest.raises(SandboxError, match=r"cannot start the sandbox init.*killed by signal 9"):
        start(_sh(lower, tmp_path / "b", "true"), server=server)


def test_closing_the_server_kills_what_still_runs(lower: Path, tmp_path: Path) -> None:
    seconds = random.randrange(6000, 7000)
    server = ForkServer()
    box = _started(lower, tmp_path, server, f"exec sleep {seconds}")
    server.close()
    with pytest.raises(SandboxError, match="exited while the sandbox ran"):
        box.wait()
    assert _gone(f"sleep {seconds}", within=5)


def test_a_killed_client_leaves_no_server_and_no_container(lower: Path, tmp_path: Path) -> None:
    seconds = random.randrange(7000, 8000)
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from runtime.forkclient import ForkServer
        from runtime.sandbox import start
        from runtime.spec import ContainerSpec, Rootfs
        tmp = Path({str(tmp_path)!r})
        (tmp / "upper").mkdir(); (tmp / "work").mkdir()
        rootfs = Rootfs(({str(lower)!r},), tmp / "upper", tmp / "work")
        spec = ContainerSpec(rootfs, ("sleep", "{seconds}"), env=("PATH=/bin",), scratch=tmp)
        box = start(spec, server=ForkServer(), own_process_group=True)
        print(box.pid, flush=True)
        time.sleep(600)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    client = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    assert client.stdout is not None
    init = int(client.stdout.readline())
    server = _parent(init)
    deadline = time.monotonic() + 20
    while not _running(f"sleep {seconds}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(f"sleep {seconds}")
    client.kill()
    client.wait()
    assert _gone(f"sleep {seconds}", within=5)
    deadline = time.monotonic() + 5
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server)
