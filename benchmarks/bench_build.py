#!/usr/bin/env python3
"""Time a cold build, a no-change rebuild and a one-file-change rebuild of a small app.

Usage: ``python3 benchmarks/bench_build.py [--files N] [--repeat R] [--json OUT]``
(as root). pybuild runs against a fresh temporary store with the fixture busybox base;
when a dockerd answers (``docker info``), the same context is built with
``docker build --network none`` and shown side by side. Figures are medians of R runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "fixtures"), str(REPO / "benchmarks")]

from make_base import make_base  # noqa: E402
from peers import docker_cli, timed  # noqa: E402

DOCKERFILE = """\
FROM busybox:latest
ENV APP=/app
WORKDIR /app
COPY requirements.txt ./
RUN for i in 1 2 3; do echo "dep $i" >> deps.txt; done
COPY src/ ./src/
RUN find src -type f | wc -l > file-count
CMD ["sh", "-c", "cat /app/file-count"]
"""


def make_app(root: Path, files: int) -> Path:
    """A Python-app-like context: requirements, a tree of modules."""
    (root / "src").mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "requirements.txt").write_text("flask==3.0\nrequests==2.31\n")
    for i in range(files):
        pkg = root / "src" / f"pkg{i % 20}"
        pkg.mkdir(exist_ok=True)
        (pkg / f"mod{i}.py").write_text(f"VALUE = {i}\n" + "x = 1\n" * 50)
    return root


def scenario(build: Callable[[], float], reset: Callable[[], None], ctx: Path) -> dict[str, float]:
    reset()
    cold = build()
    nochange = build()
    target = ctx / "src" / "pkg0" / "mod0.py"
    target.write_text(target.read_text() + f"# edit {time.time()}\n")
    onefile = build()
    return {"cold": cold, "no_change": nochange, "one_file": onefile}


def run(files: int, repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, list[dict[str, float]]] = {"pybuild": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ctx = make_app(work / "app", files)
        base = make_base(work / "busybox.tar", "docker", "busybox:latest")
        store = work / "store"
        env = {**os.environ, "PYBUILD_ROOT": str(store), "PYTHONPATH": str(REPO)}
        pybuild = [sys.executable, "-m", "builder.cli"]

        def reset_pybuild() -> None:
            shutil.rmtree(store, ignore_errors=True)
            subprocess.run(
                [*pybuild, "load", "-i", str(base)], check=True, env=env, stdout=subprocess.DEVNULL
            )

        def build_pybuild() -> float:
            return timed([*pybuild, "--progress", "plain", "-t", "bench:1", str(ctx)], env)

        docker = docker_cli()
        use_docker = docker is not None
        if use_docker:
            results["docker"] = []
            subprocess.run([docker, "load", "-i", str(base)], check=True, stdout=subprocess.DEVNULL)

        def reset_docker() -> None:
            subprocess.run(
                [str(docker), "builder", "prune", "-af"], check=False, capture_output=True
            )

        def build_docker() -> float:
            return timed(
                [str(docker), "build", "--network", "none", "-t", "bench:1", str(ctx)],
                {**os.environ, "DOCKER_BUILDKIT": "1"},
            )

        for _ in range(repeat):
            results["pybuild"].append(scenario(build_pybuild, reset_pybuild, ctx))
            if use_docker:
                results["docker"].append(scenario(build_docker, reset_docker, ctx))
    return {
        tool: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for tool, runs in results.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500, help="source files in the app (500)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; median shown (3)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    figures = run(args.files, args.repeat)
    header = f"{'tool':10} {'cold':>8} {'no-change':>10} {'one-file':>9}"
    print(f"{header}   (seconds, median of {args.repeat})")
    for tool, f in figures.items():
        print(f"{tool:10} {f['cold']:8.2f} {f['no_change']:10.2f} {f['one_file']:9.2f}")
    if "docker" not in figures:
        print("docker: no dockerd answered `docker info`; pybuild figures only")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
