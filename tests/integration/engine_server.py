"""``pybuild serve`` for client tests: a server on a temp socket over a temp store with
the busybox base loaded, stopped (SIGTERM) when the context exits."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.docker_cli import DEBIAN_DOCKER
from tests.integration.clihelp import REPO, Pybuild

DOCKER_CLI = DEBIAN_DOCKER if os.access(DEBIAN_DOCKER, os.X_OK) else shutil.which("docker")
NO_DOCKER_CLI = "needs the docker CLI (apt: docker.io); only the client is used"
COMPOSE = shutil.which("docker-compose")
NO_COMPOSE = "needs docker-compose 1.29 (apt: docker-compose)"


@dataclass
class Served:
    socket: Path
    root: Path
    log: Path
    pybuild: Pybuild

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a client of this server (classic builder, no config)."""
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0", **extra}
        env.pop("DOCKER_CONTEXT", None)
        env["DOCKER_CONFIG"] = str(self.root.parent / "docker-config")
        env["COMPOSE_DOCKER_CLI_BUILD"] = "0"
        return env

    def docker(
        self,
        *args: str | Path,
        ok: bool = True,
        cwd: Path | None = None,
        input: str | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        assert DOCKER_CLI is not None
        done = subprocess.run(
            [DOCKER_CLI, *map(str, args)],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=cwd,
            input=input,
            timeout=timeout,
            check=False,
        )
        if ok and done.returncode != 0:
            raise AssertionError(f"docker {args} failed ({done.returncode}):\n{done.stderr}")
        return done


@contextmanager
def serving(tmp: Path, base_archive: Path) -> Iterator[Served]:
    root = tmp / "store"
    cli = Pybuild(root)
    if not root.exists():  # a second server on the same store finds it ready
        root.mkdir(parents=True)
        cli("load", "-i", base_archive)
    sock = tmp / "engine.sock"
    log = tmp / "serve.log"
    env = {**os.environ, "PYBUILD_ROOT": str(root)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "builder.cli", "serve", "-H", f"unix://{sock}"],
            stdout=out,
            stderr=out,
            cwd=REPO,
            env=env,
        )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pybuild serve did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield Served(sock, root, log, cli)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
