#!/usr/bin/env python3
"""Record what pybuild's cache decides on the benchmark scenarios, to compare two versions.

Usage (as root): ``python3 -m benchmarks.cache_record OUT.json [--scenarios a,b]
[--compare OLD.json]``.

For each scenario (rendered as :mod:`benchmarks.bench_scenarios` does) the pybuild of this
checkout builds cold, warm (nothing changed) and edit (one line appended to the edit file)
in a fresh store with ``SOURCE_DATE_EPOCH`` set (so digests are reproducible), and each
build's per-step cache key, hit or miss, miss reason and layer digest and the image's
digests are written to ``OUT.json``. With ``--compare`` the record
is checked against one made by another version (e.g. before a speed change): every
difference is printed and the exit status is 1 if there is any. Fields that differ
between two records of the old version (``--volatile``: random file content, RUN output
mtimes feeding a later COPY --from) are left out. Speed work must leave it empty: the
same hits, misses, reasons and digests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "fixtures")]

from bench_scenarios import BASE, SCENARIOS, render, select  # noqa: E402
from make_base import make_base  # noqa: E402
from peers import TAG, Pybuild  # noqa: E402

EPOCH = "1700000000"
STEP_FIELDS = ("instruction", "key", "cached", "reason", "layer")


def record_build(tool: Pybuild, ctx: Path) -> dict[str, Any]:
    """Build ``ctx`` once; the cache's decisions and the image's digests."""
    cmd = [*tool.cli, "build", "--progress", "plain", "--network", "none"]
    cmd += ["--metadata-file", str(tool.meta), "-t", TAG, str(ctx)]
    env = {**tool.env, "SOURCE_DATE_EPOCH": EPOCH}  # reproducible digests to compare
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    meta = json.loads(tool.meta.read_text())
    return {
        "image": meta["image.digest"],
        "config": meta["containerimage.config.digest"],
        "steps": [{f: step[f] for f in STEP_FIELDS} for step in meta["steps"]],
    }


def record(scenarios: list[str], work: Path) -> dict[str, dict[str, Any]]:
    """scenario -> {cold, warm, edit} build records, each from a fresh store."""
    base = make_base(work / "busybox.tar", "docker", BASE)
    tool = Pybuild(work, base)
    out: dict[str, dict[str, Any]] = {}
    for scenario, (ctx, edit) in render(scenarios, work / "contexts").items():
        tool.reset()
        builds: dict[str, Any] = {}
        for metric in ("cold", "warm", "edit"):
            if metric == "edit":
                with (ctx / edit).open("a") as f:
                    f.write("# cache record edit\n")
            builds[metric] = record_build(tool, ctx)
        out[scenario] = builds
    return out


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Every place where ``new`` differs from ``old``, as ``path: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in sorted(set(old) | set(new)):
            found += differences(old.get(key), new.get(key), f"{where}/{key}")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        pairs = enumerate(zip(old, new, strict=True))
        return [d for i, (a, b) in pairs for d in differences(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="write the record here (JSON)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--compare", type=Path, help="a record of another version to check against")
    parser.add_argument(
        "--volatile",
        type=Path,
        help="a second record of the --compare version: what differs between the two is not "
        "the cache's doing (e.g. random file content, RUN mtimes) and is not compared",
    )
    args = parser.parse_args()
    scenarios = select(args.scenarios, SCENARIOS, "scenario")
    with tempfile.TemporaryDirectory(prefix="pybuild-record-") as tmp:
        result = record(scenarios, Path(tmp))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.compare is None:
        return 0
    old = json.loads(args.compare.read_text())
    old = {s: old.get(s) for s in result}
    volatile: set[str] = set()
    if args.volatile is not None:
        again = json.loads(args.volatile.read_text())
        volatile = {_where(d) for d in differences(old, {s: again.get(s) for s in result})}
    found = [d for d in differences(old, result) if _where(d) not in volatile]
    for line in found:
        print(line)
    steps = sum(len(b["steps"]) for builds in result.values() for b in builds.values())
    print(
        f"{len(result)} scenarios, {steps} steps: {len(found)} differences from "
        f"{args.compare} ({len(volatile)} fields ignored as volatile)"
    )
    return 1 if found else 0


def _where(difference: str) -> str:
    return difference.partition(": ")[0]


if __name__ == "__main__":
    sys.exit(main())
