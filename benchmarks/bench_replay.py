#!/usr/bin/env python3
"""Cache-hit-rate replay: rebuild a sequence of context revisions, report each one's hits.

Usage (as root): ``python3 benchmarks/bench_replay.py [--files N] [--git REPO --commits N]
[--no-docker] [--json OUT]``.

Generated mode (always): a Python-app-like context of N files (default 2,000) with a
dependency layer (requirements.txt), the app (src/), docs and tests that the image does
not copy, and a ``.dockerignore``; then a scripted sequence of edits (no change, one app
file, touch only, requirements, new file, docs only, an ignored file, chmod, rename,
revert, Dockerfile text), each rebuilt. With ``--git``, the last N commits of REPO are
checked out one by one in a private clone (REPO itself is not touched) and rebuilt with
a generated Dockerfile that copies the whole tree. Per revision: steps cached / steps
(hit rate), wall time, and bytes reused (pybuild's --metadata-file). When a dockerd
answers, the same revisions are built with ``docker build`` (BuildKit, ``--network
none``) side by side; docker's hit rate is read from its plain progress (``CACHED``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "fixtures"))
sys.path.insert(0, str(REPO / "benchmarks"))

from make_base import make_base  # noqa: E402
from peers import docker_cli  # noqa: E402

DOCKERFILE = """\
FROM busybox:latest
WORKDIR /app
COPY requirements.txt ./
RUN while read -r dep; do echo "installed $dep"; done < requirements.txt > deps.txt \\
 && dd if=/dev/urandom of=/app/site-packages.bin bs=64k count=32 2>/dev/null
COPY src/ ./src/
RUN find src -name '*.py' | wc -l > file-count
CMD ["sh", "-c", "cat /app/file-count"]
"""
_DEPS_FILES = ("pyproject.toml", "requirements.txt", "package.json", "go.mod", "Cargo.toml")


def git_dockerfile(deps: list[str]) -> str:
    """A deps layer from the dependency files the repo has, then the whole tree."""
    lines = ["FROM busybox:latest", "WORKDIR /src"]
    if deps:
        lines += [f"COPY {' '.join(deps)} ./", "RUN cat " + " ".join(deps) + " | wc -c > /deps"]
    return "\n".join([*lines, "COPY . ./", "RUN find . -type f | wc -l > /file-count", ""])


@dataclass(frozen=True)
class Figures:
    revision: str
    steps: int
    cached: int
    seconds: float
    bytes_reused: int | None  # None: the tool does not say

    @property
    def hit_rate(self) -> float:
        return self.cached / self.steps if self.steps else 1.0


# ---- the generated context and its revisions ------------------------------------------


def make_app(root: Path, files: int) -> None:
    """~``files`` files: 90% app modules in src/, the rest docs and tests."""
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / ".dockerignore").write_text("**/__pycache__\n**/*.log\n.git\n")
    (root / "requirements.txt").write_text("flask==3.0.0\nrequests==2.31.0\nrich==13.7.0\n")
    app = files * 9 // 10
    for i in range(app):
        pkg = root / "src" / "app" / f"pkg{i % 40}"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / f"mod{i}.py").write_text(f'"""Module {i}."""\nVALUE = {i}\n' + "x = 1\n" * 40)
    for i in range(files - app):
        where = root / ("docs" if i % 2 else "tests")
        where.mkdir(exist_ok=True)
        (where / f"page{i}.md").write_text(f"# page {i}\n" + "text\n" * 20)


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _touch_all(root: Path) -> None:
    later = time.time_ns() + 3_600_000_000_000
    for path in root.rglob("*"):
        os.utime(path, ns=(later, later), follow_symlinks=False)


def revisions(root: Path) -> Iterator[tuple[str, Callable[[], object]]]:
    """(name, edit) pairs; each edit turns the previous revision into this one."""
    mod0 = root / "src" / "app" / "pkg0" / "mod0.py"
    original = mod0.read_text()
    yield "first build", lambda: None
    yield "no change", lambda: None
    yield "edit one app file", lambda: _append(mod0, "# edited\n")
    yield "touch every file (mtime only)", lambda: _touch_all(root)
    yield "edit requirements.txt", lambda: _append(root / "requirements.txt", "attrs==23.2\n")
    yield "add an app file", lambda: (root / "src" / "app" / "new.py").write_text("NEW = 1\n")
    yield "edit docs only", lambda: _append(root / "docs" / "page1.md", "more\n")
    yield "add ignored files", lambda: _ignored(root)
    yield "chmod +x an app file", lambda: (root / "src" / "app" / "pkg1" / "mod1.py").chmod(0o755)
    yield "rename an app file", lambda: _rename(root)
    yield "revert the first edit", lambda: mod0.write_text(original)
    yield "Dockerfile: last RUN text", lambda: _edit_dockerfile(root)


def _ignored(root: Path) -> None:
    (root / "src" / "app" / "debug.log").write_text("log\n")
    cache = root / "src" / "app" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "mod0.cpython-311.pyc").write_bytes(b"\0" * 100)


def _rename(root: Path) -> None:
    pkg = root / "src" / "app" / "pkg2"
    os.rename(pkg / "mod2.py", pkg / "renamed.py")


def _edit_dockerfile(root: Path) -> None:
    text = (root / "Dockerfile").read_text().replace("> file-count", "> files.txt")
    (root / "Dockerfile").write_text(text)


# ---- builders --------------------------------------------------------------------------


class Pybuild:
    """pybuild against a private store with the fixture busybox base."""

    def __init__(self, work: Path, base: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYBUILD_ROOT": str(work / "store"), "PYTHONPATH": str(REPO)}
        self.meta = work / "meta.json"
        self.cli = [sys.executable, "-m", "builder.cli"]
        subprocess.run(
            [*self.cli, "load", "-i", str(base)],
            check=True,
            env=self.env,
            stdout=subprocess.DEVNULL,
        )

    def build(self, name: str, ctx: Path, dockerfile: Path) -> Figures:
        cmd = [*self.cli, "build", "--progress", "plain", "-f", str(dockerfile)]
        start = time.perf_counter()
        subprocess.run(
            [*cmd, "--metadata-file", str(self.meta), "-t", "replay:1", str(ctx)],
            check=True,
            env=self.env,
            capture_output=True,
        )
        seconds = time.perf_counter() - start
        totals = json.loads(self.meta.read_text())["totals"]
        return Figures(name, totals["steps"], totals["cached"], seconds, totals["bytes_reused"])


class Docker:
    """``docker build`` with BuildKit; the base loaded from the same fixture archive."""

    _STEP = re.compile(r"^#(\d+) \[[^\]]*\d+/\d+\] (RUN|COPY|ADD|WORKDIR)", re.M)
    _CACHED = re.compile(r"^#(\d+) CACHED", re.M)

    def __init__(self, cli: str, base: Path) -> None:
        self.cli = cli
        subprocess.run([cli, "load", "-i", str(base)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([cli, "builder", "prune", "-af"], check=False, capture_output=True)

    def build(self, name: str, ctx: Path, dockerfile: Path) -> Figures:
        cmd = [self.cli, "build", "--progress", "plain", "--network", "none", "-f", str(dockerfile)]
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        start = time.perf_counter()
        done = subprocess.run(
            [*cmd, "-t", "replay:1", str(ctx)], check=True, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        steps = set(self._STEP.findall(done.stderr))
        cached = {n for n in self._CACHED.findall(done.stderr)} & {n for n, _ in steps}
        return Figures(name, len(steps), len(cached), seconds, None)


Builder = Pybuild | Docker


def replay_generated(
    builders: dict[str, Builder], work: Path, files: int
) -> dict[str, list[Figures]]:
    ctx = work / "app"
    make_app(ctx, files)
    out: dict[str, list[Figures]] = {name: [] for name in builders}
    for name, edit in revisions(ctx):
        edit()
        for tool, builder in builders.items():
            out[tool].append(builder.build(name, ctx, ctx / "Dockerfile"))
    return out


def _git(clone: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True)
    return done.stdout.decode()


def replay_git(
    builders: dict[str, Builder], work: Path, repo: Path, commits: int
) -> dict[str, list[Figures]]:
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(repo), str(clone)], check=True)
    log = _git(clone, "log", "--format=%h %s", f"-{commits}").splitlines()
    # The deps layer copies the dependency files every replayed commit has.
    deps = [
        f
        for f in _DEPS_FILES
        if all(f in _git(clone, "ls-tree", "--name-only", line.split()[0]).split() for line in log)
    ]
    dockerfile = work / "git.Dockerfile"
    dockerfile.write_text(git_dockerfile(deps))
    Path(f"{dockerfile}.dockerignore").write_text(".git\n")
    out: dict[str, list[Figures]] = {name: [] for name in builders}
    for line in reversed(log):
        commit, _, subject = line.partition(" ")
        _git(clone, "checkout", "-q", "--detach", commit)
        for tool, builder in builders.items():
            out[tool].append(builder.build(f"{commit} {subject[:40]}", clone, dockerfile))
    return out


# ---- report ---------------------------------------------------------------------------


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def print_table(title: str, results: dict[str, list[Figures]]) -> None:
    tools = list(results)
    print(f"\n{title}")
    head = f"{'revision':32}" + "".join(
        f" | {t + ' hits':>13} {'time':>7} {'reused':>9}" for t in tools
    )
    print(head)
    print("-" * len(head))
    for i, first in enumerate(results[tools[0]]):
        row = f"{first.revision[:32]:32}"
        for tool in tools:
            f = results[tool][i]
            hits = f"{f.cached}/{f.steps} {f.hit_rate:4.0%}"
            row += f" | {hits:>13} {f.seconds:6.2f}s {_mb(f.bytes_reused):>9}"
        print(row)
    for tool in tools:
        runs = results[tool][1:]  # the first build cannot hit
        steps, cached = sum(f.steps for f in runs), sum(f.cached for f in runs)
        secs = sum(f.seconds for f in runs)
        print(
            f"{tool}: after the first build, {cached}/{steps} steps cached "
            f"({cached / steps:.0%}), {secs:.1f}s in all"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="files in the generated app")
    parser.add_argument("--git", type=Path, help="also replay the last commits of this repo")
    parser.add_argument("--commits", type=int, default=10, help="commits to replay (10)")
    parser.add_argument("--no-docker", action="store_true", help="pybuild only")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args()
    report: dict[str, dict[str, list[Figures]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = make_base(work / "busybox.tar", "docker", "busybox:latest")
        cli = None if args.no_docker else docker_cli()
        for mode in ["generated", *(["git"] if args.git else [])]:
            builders: dict[str, Builder] = {"pybuild": Pybuild(work / mode, base)}
            if cli is not None:
                builders["docker"] = Docker(cli, base)
            if mode == "generated":
                report[mode] = replay_generated(builders, work / mode, args.files)
            else:
                report[mode] = replay_git(builders, work / mode, args.git, args.commits)
            title = f"git: last {args.commits} commits of {args.git}"
            if mode == "generated":
                title = f"generated app ({args.files} files)"
            print_table(title, report[mode])
        if cli is None:
            print("\ndocker: not compared (no dockerd answered `docker info`, or --no-docker)")
    if args.json:
        doc = {m: {t: [asdict(f) for f in fs] for t, fs in r.items()} for m, r in report.items()}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
