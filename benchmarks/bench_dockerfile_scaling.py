#!/usr/bin/env python3
"""How reading a Dockerfile scales: parse, build checks and planning of large files.

Usage, from the repository root (so this checkout's code is measured, not an installed
one): ``python3 -m benchmarks.bench_dockerfile_scaling [STAGES] [ARGS] [ENVS]``
(default 800 stages, 20000 ARGs, 20000 ENVs). Times, for each shape at n/2 and n:

- ``stages``: n stages, each ``FROM`` the one before (``FROM scratch AS s0``, ``FROM s0
  AS s1``, ...), each with a relative WORKDIR, a ``USER $v`` (v set by an ENV in the
  first stage) and a shell-form CMD, so every check that follows a stage's ancestry
  does so (an ENV in every stage would make each stage's image config, and so the
  plan itself, grow with n);
- ``global-args`` / ``stage-args``: n ``ARG aN=$a(N-1)`` before the first FROM, or in
  one stage, each default reading the previous one;
- ``envs``: n ``ENV eN=$e(N-1)`` in one stage.

Each figure is parse + ``check_warnings`` + ``make_plan`` (no base image: scratch), the
work a build does before its first step. A linear implementation shows a ratio near 2
between n and n/2.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.planner import PlanRequest, make_plan
from cache.images import StoredImage


def chained_stages(n: int) -> str:
    lines = ["FROM scratch AS s0", "ENV v=1"]
    for i in range(1, n):
        lines += [f"FROM s{i - 1} AS s{i}", "WORKDIR rel", "USER $v", "CMD run"]
    return "\n".join(lines) + "\n"


def global_args(n: int) -> str:
    lines = ["ARG a0=x", *(f"ARG a{i}=$a{i - 1}" for i in range(1, n))]
    return "\n".join([*lines, "FROM scratch", "ARG a1", "LABEL l=$a1"]) + "\n"


def stage_args(n: int) -> str:
    lines = ["FROM scratch", "ARG a0=x", *(f"ARG a{i}=$a{i - 1}" for i in range(1, n))]
    return "\n".join([*lines, "LABEL l=$a1"]) + "\n"


def envs(n: int) -> str:
    lines = ["FROM scratch", "ENV e0=x", *(f"ENV e{i}=$e{i - 1}" for i in range(1, n))]
    return "\n".join(lines) + "\n"


def _no_image(name: str, base: ins.From) -> StoredImage:
    raise AssertionError(f"the benchmark uses no base image, asked for {name}")


def read(text: str) -> float:
    start = time.perf_counter()
    df = parse_dockerfile(text)
    make_plan(PlanRequest(df, {}, None, "host"), _no_image)
    return time.perf_counter() - start


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:4]]
    stages, args, env_count = [*sizes, *(800, 20000, 20000)[len(sizes) :]]
    shapes: list[tuple[str, Callable[[int], str], int]] = [
        ("stages", chained_stages, stages),
        ("global-args", global_args, args),
        ("stage-args", stage_args, args),
        ("envs", envs, env_count),
    ]
    for name, make, n in shapes:
        half, full = read(make(n // 2)), read(make(n))
        print(f"{name:12} n={n:6}: {full:8.3f} s (n/2: {half:7.3f} s, ratio {full / half:4.1f})")


if __name__ == "__main__":
    main()
