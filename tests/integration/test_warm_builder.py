"""`pybuild warm`: while it serves a store, `pybuild build` on that store runs in a fork of
it, and gives what the daemonless command gives: the same image digest, cache hits and
miss reasons, output, errors and exit codes; Ctrl-C still cancels the build."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import REPO, Pybuild, Result, processes_with, write_context
from tests.integration.rootless_users import make_user, remove_user

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

DOCKERFILE = (
    "FROM busybox:latest\n"
    "COPY app.txt /app/app.txt\n"
    "RUN cat /app/app.txt > /app/copy && echo built > /app/stamp\n"
    "ENV MODE=prod\n"
    'CMD ["cat", "/app/copy"]\n'
)
EPOCH = {"SOURCE_DATE_EPOCH": "0"}


class WarmServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root.parent / f"{root.name}-warm.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "builder.cli", "warm"],
                cwd=REPO,
                env={**os.environ, "PYBUILD_ROOT": str(self.root)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(self.root / "warm.sock"))
                    return
                except OSError:
                    time.sleep(0.05)
        raise AssertionError(f"the warm builder did not start:\n{self.log.read_text()}")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def served(self) -> list[str]:
        """The commands the server has run, from its log ("worker N runs build: ...")."""
        return re.findall(r" worker \d+ runs (\w+): pybuild ", self.log.read_text())


@pytest.fixture
def warm(pybuild: Pybuild) -> Iterator[WarmServer]:
    server = WarmServer(pybuild.root)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.stop()


@pytest.fixture
def daemonless(tmp_path: Path, base_archive: Path) -> Pybuild:
    """A second store, with the base loaded, built without a warm builder."""
    cli = Pybuild(tmp_path / "daemonless-store")
    cli("load", "-i", base_archive)
    return cli


def _build(cli: Pybuild, ctx: Path, meta: Path, *args: str, ok: bool = True) -> Result:
    return cli(
        "build", "--progress", "plain", "--metadata-file", meta, "-t", "app", *args, ctx,
        env=EPOCH, ok=ok,
    )  # fmt: skip


def _steps(meta: Path) -> list[tuple[Any, ...]]:
    doc = json.loads(meta.read_text())
    # not "layer": a RUN's layer keeps its files' real times; the image's are clamped
    fields = ("instruction", "key", "cached", "reason")
    return [tuple(step[f] for f in fields) for step in doc["steps"]]


def test_warm_build_gives_the_daemonless_image_hits_and_miss_reasons(
    tmp_path: Path, pybuild: Pybuild, warm: WarmServer, daemonless: Pybuild
) -> None:
    ctx = write_context(tmp_path / "ctx", {"app.txt": "one\n"}, DOCKERFILE)
    runs: dict[str, list[tuple[str, list[tuple[Any, ...]]]]] = {"warm": [], "daemonless": []}
    for change in ("cold", "warm", "edit"):
        if change == "edit":
            (ctx / "app.txt").write_text("two\n")
        for name, cli in (("warm", pybuild), ("daemonless", daemonless)):
            meta = tmp_path / f"{name}-{change}.json"
            _build(cli, ctx, meta)
            digest = cli.inspect("app")["Id"]
            runs[name].append((digest, _steps(meta)))
    assert runs["warm"] == runs["daemonless"]
    assert pybuild("run", "--rm", "app").out == "two\n"
    served, alone = tmp_path / "served.tar", tmp_path / "alone.tar"
    pybuild("save", "--format", "oci", "-o", served, "app")
    pybuild("save", "--format", "oci", "-o", alone, "app", env={"PYBUILD_NO_WARM": "1"})
    assert served.read_bytes() == alone.read_bytes()
    assert warm.served() == ["build"] * 3 + ["save"]


def test_warm_build_reports_errors_and_exit_codes_as_the_cli(
    tmp_path: Path, pybuild: Pybuild, warm: WarmServer, daemonless: Pybuild
) -> None:
    ctx = write_context(tmp_path / "bad", {}, "FROM busybox:latest\nFROMM x\n")
    served = _build(pybuild, ctx, tmp_path / "m1.json", ok=False)
    alone = _build(daemonless, ctx, tmp_path / "m2.json", ok=False)
    assert served.code == alone.code == 1
    assert "Dockerfile:2: unknown instruction: FROMM" in served.err
    assert served.err.replace(str(pybuild.root), "") == alone.err.replace(str(daemonless.root), "")
    assert warm.served() == ["build"]
    usage = pybuild("build", "--no-such-flag", ".", ok=False)
    assert usage.code == 2 and "unrecognized arguments: --no-such-flag" in usage.err


def test_warm_builder_leaves_container_commands_and_opted_out_builds_to_the_cli(
    tmp_path: Path, pybuild: Pybuild, warm: WarmServer
) -> None:
    ctx = write_context(tmp_path / "ctx", {"app.txt": "one\n"}, DOCKERFILE)
    assert pybuild("inspect", "busybox:latest").out.startswith("[")
    pybuild("build", "-q", "-t", "app", ctx, env={"PYBUILD_NO_WARM": "1"})
    assert warm.served() == []
    pybuild("build", "-q", "-t", "app", ctx)
    assert "app" in pybuild("images").out
    assert warm.served() == ["build", "images"]


def _wait_for(found: Callable[[], list[int]], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while not (pids := found()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def _ancestors(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of ``pid``'s parent, its parent, and so on up to init."""
    chain = []
    while pid > 1:
        status = Path(f"/proc/{pid}/status").read_text()
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        chain.append((pid, cmdline))
    return chain


def test_ctrl_c_on_the_client_cancels_the_warm_build(
    tmp_path: Path, pybuild: Pybuild, warm: WarmServer
) -> None:
    ctx = write_context(
        tmp_path / "slow", {}, "FROM busybox:latest\nRUN echo step-started && sleep 6061\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "build", "--progress", "plain", str(ctx)],
        cwd=REPO,
        env={**os.environ, "PYBUILD_ROOT": str(pybuild.root)},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.rstrip().endswith("step-started"):
            break
    (step,) = _wait_for(lambda: processes_with("sleep 6061"))
    chain = _ancestors(step)
    # the step's sandbox came from a fork server the build forked from itself, not from
    # a new `python -m runtime.forkserver`, and the build is a fork of the warm builder
    assert warm.proc is not None and warm.proc.pid in [pid for pid, _ in chain]
    assert not [cmd for _, cmd in chain if "runtime.forkserver" in cmd]
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=30) == 130
    assert time.monotonic() - started < 15
    assert "build cancelled by SIGINT" in rest
    report = json.loads(pybuild("cache", "verify", "--json").out)
    assert report["clean"], report["findings"]


def test_a_second_warm_builder_for_a_store_is_refused(pybuild: Pybuild, warm: WarmServer) -> None:
    second = pybuild("warm", ok=False, timeout=60)
    assert second.code != 0
    assert "a warm builder already serves this store" in second.err
    assert "Traceback" not in second.err
    assert warm.stop() == 0
    assert not (pybuild.root / "warm.sock").exists()


def test_a_client_in_another_mount_namespace_builds_on_its_own(
    tmp_path: Path, pybuild: Pybuild, warm: WarmServer
) -> None:
    """Paths a command names are resolved where the client runs: a server in another
    mount namespace could see other files there, so it says no."""
    ctx = write_context(tmp_path / "ctx", {"app.txt": "one\n"}, DOCKERFILE)
    isolated = ["unshare", "--mount", "--propagation", "private"]
    done = subprocess.run(
        [*isolated, sys.executable, "-m", "builder.cli", "build", "-q", "-t", "app", str(ctx)],
        cwd=REPO,
        env={**os.environ, "PYBUILD_ROOT": str(pybuild.root)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sha256:")
    assert warm.served() == []


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("useradd", "userdel", "setpriv", "unshare")),
    reason="needs useradd, userdel, setpriv and unshare (util-linux, passwd)",
)
def test_a_rootless_users_warm_builder_runs_their_builds_with_run_steps(
    base_archive: Path,
) -> None:
    user = make_user(True)
    try:
        base = user.home / "base.tar"
        shutil.copyfile(base_archive, base)
        user.pybuild("load", "-i", user.give(base))
        ctx = user.give(write_context(user.home / "ctx", {"app.txt": "one\n"}, DOCKERFILE))
        log, sock = user.home / "warm.log", user.home / ".local/share/pybuild/warm.sock"
        # The server and its client in one mount namespace: one script run as the user.
        script = user.home / "both.sh"
        script.write_text(
            f"{sys.executable} -m builder.cli warm > {log} 2>&1 &\n"
            "server=$!\n"
            f"n=0; while [ ! -S {sock} ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done\n"
            f"{sys.executable} -m builder.cli build -q -t app {ctx}\n"
            "code=$?\n"
            "kill $server; wait $server\n"
            "exit $code\n"
        )
        user.give(script)
        command, env = user.command("--version")
        command = [*command[: command.index(sys.executable)], "sh", str(script)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{done.stderr}\n{log.read_text()}"
        assert done.stdout.startswith("sha256:")
        assert f"runs build: pybuild build -q -t app {ctx}" in log.read_text()
        alone = user.pybuild("build", "-q", "-t", "app", ctx, env={"PYBUILD_NO_WARM": "1"})
        assert alone.out == done.stdout  # a full hit: the same image
    finally:
        remove_user(user.name)


def test_relative_paths_are_the_clients(tmp_path: Path, pybuild: Pybuild, warm: WarmServer) -> None:
    """`pybuild -t app ctx` from the client's directory: the shorthand and the context
    are read where the client runs, not where the server was started."""
    write_context(tmp_path / "ctx", {"app.txt": "one\n"}, DOCKERFILE)
    done = subprocess.run(
        [sys.executable, "-m", "builder.cli", "-q", "-t", "app", "ctx"],
        cwd=tmp_path,
        env={**os.environ, "PYBUILD_ROOT": str(pybuild.root), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert warm.served() == ["build"]  # the shorthand
