#!/usr/bin/env python3
"""The product benchmark: cold, warm, edit and export times of pybuild beside BuildKit and Buildah.

Usage (as root): ``python3 -m benchmarks.bench_scenarios [--scenarios a,b] [--repeat N]
[--tools pybuild,pybuild-warm,buildkit,buildah] [--runs-true N] [--settle S]
[--keep-emulators] [--json OUT]``.

Renders ``../shared/bench/scenarios`` with its ``gen.py`` (busybox base from
``fixtures/make_base.py``) and a 2,000-file Python app (``pyapp2k``: 40 packages x 50
modules) into a temporary directory. Per scenario, run by run, every tool's store or
build cache is emptied, then (after ``--settle`` seconds, 31 by default: see ``fresh``)
each tool in turn builds cold (empty store or build cache, base present), warm (nothing
changed), edit (one line appended to the scenario's edit file) and exports the image
(pybuild ``save --format oci``, ``buildah push oci-archive:``, ``docker save``). With
``--runs-true N`` (default 10, 0 skips it) a Dockerfile of N ``RUN true`` is also built
with ``--no-cache``. One table per pybuild tool follows (``pybuild``, and
``pybuild-warm``: the same CLI with ``pybuild warm`` serving its store): per scenario and
metric its median seconds, its cache hit rate (``--metadata-file`` totals), and each
peer's median with the pybuild tool's ratio over it. Peers not installed are skipped
with a line saying so. The figures are never a test assertion. Each timed command
starts after ``sync`` (``peers.timed``), so none pays for the writeback of what the
command before it (another tool's build or store reset) wrote.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "fixtures")]

import emulators  # noqa: E402
from bench_table import Run, format_table, is_pybuild, table_rows  # noqa: E402
from make_base import make_base  # noqa: E402
from peers import TOOLS, Tool, available_tools  # noqa: E402

GEN = BENCH.parents[1] / "shared" / "bench" / "scenarios" / "gen.py"
BASE = "busybox:latest"
SHARED = ("tiny", "pyapp", "multistage", "biglayer", "manyfiles")
PYAPP2K = "pyapp2k"
SCENARIOS = (*SHARED, PYAPP2K)
Figure = tuple[str, float | None, float | None]  # metric, seconds (None: failed), hit rate
STEPS = ("cold", "warm", "edit", "export")
# ext4 skips inodes freed within 30 s of now (after writeback) when it places new ones.
SETTLE = 31.0
PYAPP2K_EDIT = "src/app/pkg07/mod_013.py"
PYAPP2K_DOCKERFILE = f"""\
FROM {BASE}
WORKDIR /app
COPY requirements.txt ./
RUN while read -r dep; do echo "installed $dep"; done < requirements.txt > deps.txt
COPY src ./src
RUN find src -name '*.py' | wc -l > module-count
ARG RELEASE=dev
RUN echo "$RELEASE" > release
"""


def make_pyapp2k(ctx: Path, packages: int = 40, modules: int = 50) -> None:
    """The Python-app context: requirements.txt and ``packages`` x ``modules`` modules."""
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(PYAPP2K_DOCKERFILE)
    (ctx / "requirements.txt").write_text("flask==3.0.0\nrequests==2.31.0\nrich==13.7.0\n")
    for p in range(packages):
        pkg = ctx / "src" / "app" / f"pkg{p:02d}"
        pkg.mkdir(parents=True)
        for m in range(modules):
            body = f'"""Module {p}.{m}."""\nVALUE = {p * modules + m}\n' + "x = 1\n" * 40
            (pkg / f"mod_{m:03d}.py").write_text(body)


def parse_tsv(text: str) -> dict[str, str]:
    """scenario name -> edit file, from gen.py's scenarios.tsv."""
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return {row[0]: row[1] for row in rows}


def render(scenarios: list[str], out: Path) -> dict[str, tuple[Path, str]]:
    """Each scenario's context directory and edit file, rendered under ``out``."""
    shared = [s for s in scenarios if s in SHARED]
    edits: dict[str, str] = {}
    if shared:
        gen = [sys.executable, str(GEN), "--base", BASE, str(out), *shared]
        subprocess.run(gen, check=True, stdout=subprocess.DEVNULL)
        edits = parse_tsv((out / "scenarios.tsv").read_text())
    if PYAPP2K in scenarios:
        make_pyapp2k(out / PYAPP2K)
        edits[PYAPP2K] = PYAPP2K_EDIT
    return {s: (out / s, edits[s]) for s in scenarios}


PACKAGES = ("builder", "cache", "runtime", "fstree")


def stale_bytecode(repo: Path, packages: tuple[str, ...] = PACKAGES) -> list[Path]:
    """Modules of ``packages`` whose ``__pycache__`` file this Python would not use: missing,
    for another Python (magic number) or older than its source (timestamp or hash).

    With PYTHONDONTWRITEBYTECODE set, Python compiles each of those on every run and
    never saves the result, which is start-up time a no-change rebuild pays each time.
    """
    stale = []
    for package in packages:
        for source in sorted((repo / package).rglob("*.py")):
            if not _bytecode_current(source):
                stale.append(source)
    return stale


def _bytecode_current(source: Path) -> bool:
    """Whether the cached bytecode of ``source`` passes the checks the import system makes
    before using it (PEP 552 header: magic, flags, then mtime and size, or a hash)."""
    try:
        header = Path(importlib.util.cache_from_source(str(source))).read_bytes()[:16]
        st = source.stat()
    except OSError:
        return False
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    flags = int.from_bytes(header[4:8], "little")
    if flags & 0b1:  # hash-based: checked against the source unless unchecked
        unchecked = not flags & 0b10
        return unchecked or header[8:16] == importlib.util.source_hash(source.read_bytes())
    mtime = int.from_bytes(header[8:12], "little")
    size = int.from_bytes(header[12:16], "little")
    return mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF


def bytecode_note(repo: Path, packages: tuple[str, ...] = PACKAGES) -> str | None:
    """A line saying pybuild compiled its modules on every run, or None when it did not
    (bytecode is written, or every module's cached bytecode is current)."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return None
    stale = stale_bytecode(repo, packages)
    if not stale:
        return None
    return (
        f"pybuild ran without bytecode for {len(stale)} modules (e.g. "
        f"{stale[0].relative_to(repo)}): PYTHONDONTWRITEBYTECODE is set, so each run "
        "compiled them; run `python3 -m compileall builder cache runtime fstree`"
    )


def select(given: str, known: tuple[str, ...], what: str) -> list[str]:
    """The comma-separated names in ``given``, each checked against ``known``."""
    names = [n.strip() for n in given.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def measure(tool: Tool, ctx: Path, edit: Path, export: Path) -> list[Figure]:
    """(metric, seconds, hit rate) of cold, warm, edit and export for one tool.

    A failed command ends the sequence; it and the metrics after it get None.
    """
    out: list[Figure] = []
    try:
        for metric in STEPS[:3]:
            if metric == "edit":
                with edit.open("a") as f:
                    f.write(f"# bench edit by {tool.name}\n")
            build = tool.build(ctx)
            out.append((metric, build.seconds, build.hit_rate))
        out.append(("export", tool.export(export), None))
    except subprocess.CalledProcessError as error:
        _failed(tool, error)
    export.unlink(missing_ok=True)
    return out + [(metric, None, None) for metric in STEPS[len(out) :]]


def _record(runs: list[Run], where: tuple[str, str, int, float], figures: list[Figure]) -> None:
    """Append one run per figure; ``where`` is scenario, tool, run number, load before."""
    scenario, tool, n, load = where
    for metric, seconds, hit_rate in figures:
        run = {"scenario": scenario, "metric": metric, "tool": tool, "run": n}
        runs.append({**run, "seconds": seconds, "hit_rate": hit_rate, "load": round(load, 2)})
        shown = "fail" if seconds is None else f"{seconds:.2f}s"
        print(f"  {scenario} run {n} {tool} {metric}: {shown} (load {load:.2f})", file=sys.stderr)


def _failed(tool: Tool, error: subprocess.CalledProcessError) -> None:
    detail = (error.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
    print(f"  {tool.name}: failed: {' '.join(map(str, error.cmd))}: {detail}", file=sys.stderr)


def fresh(tools: list[Tool], settle: float) -> set[str]:
    """Empty every tool's store or build cache, then sync and wait ``settle`` seconds.

    Each run starts with all the resets, not with its own: on ext4 without a journal a
    file created among inodes freed less than 30 s ago (after writeback) costs up to 50
    times more, so a cold build right after its own reset's deletions would measure the
    reset. Returns the names of the tools whose reset failed.
    """
    failed = set()
    for tool in tools:
        try:
            tool.reset()
        except subprocess.CalledProcessError as error:
            _failed(tool, error)
            failed.add(tool.name)
    if settle > 0:
        os.sync()
        time.sleep(settle)
    return failed


def run_scenarios(
    tools: list[Tool],
    contexts: dict[str, tuple[Path, str]],
    repeat: int,
    work: Path,
    settle: float = SETTLE,
) -> list[Run]:
    runs: list[Run] = []
    for scenario, (ctx, edit) in contexts.items():
        for n in range(1, repeat + 1):
            failed = fresh(tools, settle)
            for tool in tools:
                load = os.getloadavg()[0]
                if tool.name in failed:
                    figures: list[Figure] = [(metric, None, None) for metric in STEPS]
                else:
                    figures = measure(tool, ctx, ctx / edit, work / f"{tool.name}-export.tar")
                _record(runs, (scenario, tool.name, n, load), figures)
    return runs


def run_true(tools: list[Tool], steps: int, repeat: int, work: Path) -> list[Run]:
    """``steps`` x ``RUN true`` with --no-cache, each tool in turn, ``repeat`` times."""
    ctx = work / "runs-true"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\n" + "RUN true\n" * steps)
    runs: list[Run] = []
    fresh(tools, 0)
    for n in range(1, repeat + 1):
        for tool in tools:
            load = os.getloadavg()[0]
            try:
                build = tool.build(ctx, no_cache=True)
                figures: list[Figure] = [("no-cache", build.seconds, build.hit_rate)]
            except subprocess.CalledProcessError as error:
                _failed(tool, error)
                figures = [("no-cache", None, None)]
            _record(runs, (f"{steps}x RUN true", tool.name, n, load), figures)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; median shown (3)")
    parser.add_argument("--runs-true", type=int, default=10, help="RUN true steps (10; 0: skip)")
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE,
        help=f"seconds to wait after the resets before each run ({SETTLE:g}; 0: none)",
    )
    parser.add_argument(
        "--keep-emulators",
        action="store_true",
        help="leave binfmt_misc on during the run (dockerd 20.10's BuildKit then probes "
        "every registered emulator at each build; see benchmarks/emulators.py)",
    )
    parser.add_argument("--json", type=Path, help="also write every run as JSON here")
    args = parser.parse_args()
    scenarios = select(args.scenarios, SCENARIOS, "scenario")
    wanted = select(args.tools, TOOLS, "tool")
    with tempfile.TemporaryDirectory(prefix="pybuild-bench-") as tmp:
        work = Path(tmp)
        base = make_base(work / "busybox.tar", "docker", BASE)
        tools, skipped = available_tools(wanted, work, base)
        for line in skipped:
            print(line)
        contexts = render(scenarios, work / "contexts")
        pause = any(t.name == "buildkit" for t in tools) and not args.keep_emulators
        with emulators.paused() if pause else nullcontext(False) as off:
            if off:
                print(
                    "binfmt_misc: off for the run (dockerd 20.10's BuildKit would probe each "
                    "registered emulator at every build; current BuildKit probes once)"
                )
            runs = run_scenarios(tools, contexts, args.repeat, work, args.settle)
            if args.runs_true > 0:
                runs += run_true(tools, args.runs_true, args.repeat, work)
    names = [t.name for t in tools]
    subjects = [name for name in names if is_pybuild(name)] or names[:1]
    for subject in subjects:
        head = f"{subject}: seconds, median of {args.repeat}"
        print(f"\n{head}; /peer: {subject}'s median over the peer's")
        print(format_table(table_rows(runs, names, subject)))
    note = bytecode_note(BENCH.parent) if subjects and is_pybuild(subjects[0]) else None
    if note:
        print(note)
    loads = [r["load"] for r in runs]
    if loads:
        print(f"load average (1 min) during the runs: {min(loads)} to {max(loads)}")
    if args.json:
        doc = {"repeat": args.repeat, "tools": names, "runs": runs}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
