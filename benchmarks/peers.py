"""The builders a benchmark drives: pybuild (on its own, and with ``pybuild warm``
serving its store), BuildKit through dockerd, Buildah.

Each driver builds a context with its own store or cache, can empty it (a cold build
then starts from the base image alone) and can export the last image as an archive.
A driver times only the command it runs; resets and base loads are not timed.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAG = "bench:1"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds that ``cmd`` took; its output is dropped, a failure raises.

    The file systems are synced first (not timed): what the previous command wrote (a
    peer's build, a store reset's deletions) is written back before the clock starts,
    not during the next tool's build.
    """
    os.sync()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def docker_cli() -> str | None:
    """A docker client that answers ``docker info`` and can build with BuildKit, or None.

    Clients from 23.0 on need the buildx plugin for BuildKit; a newer client without it
    may shadow Debian's 20.10 one (built-in BuildKit) on PATH, so both are tried,
    Debian's first (as the test suite does).
    """
    candidates = [c for c in ("/usr/bin/docker", shutil.which("docker")) if c and Path(c).exists()]
    for cli in dict.fromkeys(candidates):
        if subprocess.run([cli, "info"], capture_output=True, check=False).returncode != 0:
            continue
        version = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        has_buildx = subprocess.run([cli, "buildx", "version"], capture_output=True).returncode == 0
        if has_buildx or version.split(".")[0] in {"19", "20"}:
            return cli
    return None


@dataclass(frozen=True)
class Build:
    """One timed build; ``hit_rate`` is None for a tool that does not report it."""

    seconds: float
    hit_rate: float | None = None


class Pybuild:
    """pybuild with a private store under ``work``, loaded with the base archive."""

    name = "pybuild"

    def __init__(self, work: Path, base: Path) -> None:
        self.work, self.base = work, base
        self.store = work / "pybuild-store"
        self.meta = work / "pybuild-meta.json"
        self.env = {**os.environ, "PYBUILD_ROOT": str(self.store), "PYTHONPATH": str(REPO)}
        self.cli = [sys.executable, "-m", "builder.cli"]

    def reset(self) -> None:
        shutil.rmtree(self.store, ignore_errors=True)
        load = [*self.cli, "load", "-i", str(self.base)]
        subprocess.run(load, check=True, env=self.env, stdout=subprocess.DEVNULL)

    def build(self, ctx: Path, no_cache: bool = False) -> Build:
        cmd = [*self.cli, "build", "--progress", "plain", "--network", "none"]
        cmd += ["--metadata-file", str(self.meta), "-t", TAG]
        seconds = timed([*cmd, *(["--no-cache"] if no_cache else []), str(ctx)], self.env)
        return Build(seconds, json.loads(self.meta.read_text())["totals"]["hit_rate"])

    def export(self, dest: Path) -> float:
        return timed([*self.cli, "save", "--format", "oci", "-o", str(dest), TAG], self.env)


class PybuildWarm(Pybuild):
    """pybuild with ``pybuild warm`` serving its private store: builds and saves run in a
    fork of the warm builder (``builder.cli.warm_server``). Started after each reset, so
    its start-up is never timed; stopped when the benchmark ends."""

    name = "pybuild-warm"

    def __init__(self, work: Path, base: Path) -> None:
        super().__init__(work / "warm", base)
        self.work.mkdir(exist_ok=True)
        self.server: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)

    def reset(self) -> None:
        self.stop()
        super().reset()
        self.server = subprocess.Popen(
            [*self.cli, "warm"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        sock = self.store / "warm.sock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.server.poll() is None:
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(sock))
                    return
                except OSError:
                    time.sleep(0.05)
        self.stop()
        raise subprocess.CalledProcessError(1, [*self.cli, "warm"], stderr=b"did not start")

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=30)
        self.server = None


class BuildKit:
    """``DOCKER_BUILDKIT=1 docker build`` against the running dockerd."""

    name = "buildkit"

    def __init__(self, cli: str, base: Path) -> None:
        self.cli = cli
        self.env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        subprocess.run([cli, "load", "-i", str(base)], check=True, stdout=subprocess.DEVNULL)

    def reset(self) -> None:
        subprocess.run([self.cli, "rmi", "-f", TAG], check=False, capture_output=True)
        subprocess.run([self.cli, "builder", "prune", "-af"], check=False, capture_output=True)

    def build(self, ctx: Path, no_cache: bool = False) -> Build:
        cmd = [self.cli, "build", "--network", "none", "-t", TAG]
        return Build(timed([*cmd, *(["--no-cache"] if no_cache else []), str(ctx)], self.env))

    def export(self, dest: Path) -> float:
        return timed([self.cli, "save", "-o", str(dest), TAG])


class Buildah:
    """``buildah bud --layers`` with a private storage root under ``work``."""

    name = "buildah"

    def __init__(self, work: Path, base: Path) -> None:
        self.base = work / "buildah-base.tar"
        shutil.copyfile(base, self.base)
        root, run = work / "buildah-root", work / "buildah-run"
        self.dirs = (root, run)
        self.cli = ["buildah", "--root", str(root), "--runroot", str(run)]
        self.cli += ["--storage-driver", "overlay"]

    def reset(self) -> None:
        for path in self.dirs:
            if path.exists():
                subprocess.run(["umount", "-R", str(path)], check=False, capture_output=True)
                shutil.rmtree(path, ignore_errors=True)
        pull = [*self.cli, "pull", "-q", f"docker-archive:{self.base}"]
        subprocess.run(pull, check=True, stdout=subprocess.DEVNULL)

    def build(self, ctx: Path, no_cache: bool = False) -> Build:
        cmd = [*self.cli, "bud", "--layers", "--network", "none", "--jobs", "2", "-t", TAG]
        return Build(timed([*cmd, *(["--no-cache"] if no_cache else []), str(ctx)]))

    def export(self, dest: Path) -> float:
        return timed([*self.cli, "push", "-q", TAG, f"oci-archive:{dest}"])


Tool = Pybuild | PybuildWarm | BuildKit | Buildah
TOOLS = ("pybuild", "pybuild-warm", "buildkit", "buildah")


def available_tools(wanted: list[str], work: Path, base: Path) -> tuple[list[Tool], list[str]]:
    """The drivers for ``wanted`` that can run here, and one line per tool skipped."""
    tools: list[Tool] = []
    skipped: list[str] = []
    for name in wanted:
        if name == "pybuild":
            tools.append(Pybuild(work, base))
        elif name == "pybuild-warm":
            tools.append(PybuildWarm(work, base))
        elif name == "buildkit":
            cli = docker_cli()
            if cli is None:
                skipped.append("buildkit: skipped (no dockerd answered `docker info`)")
            else:
                tools.append(BuildKit(cli, base))
        elif shutil.which("buildah") is None:
            skipped.append("buildah: skipped (not installed; `apt-get install buildah`)")
        else:
            tools.append(Buildah(work, base))
    return tools, skipped
