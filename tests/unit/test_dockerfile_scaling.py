"""Reading a Dockerfile (parse, build checks, plan) does work linear in its size.

Work is counted, not timed: the number of Python lines executed (``sys.settrace``)
while reading a file of n and of 2n units. Linear code gives a ratio near 2; the
quadratic and cubic code these tests guard against gave 4 to 8. Timings are in
``benchmarks/bench_dockerfile_scaling.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.planner import PlanRequest, make_plan
from cache.images import StoredImage

LINEAR = 2.6  # allowed ratio of work between 2n and n


def _no_image(name: str, base: ins.From) -> StoredImage:
    raise AssertionError(f"no base image expected, asked for {name}")


def _lines_run(text: str) -> int:
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        df = parse_dockerfile(text)
        make_plan(PlanRequest(df, {}, None, "host"), _no_image)
    finally:
        sys.settrace(previous)
    return count


def _ratio(make: Callable[[int], str], n: int) -> float:
    return _lines_run(make(2 * n)) / _lines_run(make(n))


def _chained_stages(n: int) -> str:
    lines = ["FROM scratch AS s0", "ENV v=1"]
    for i in range(1, n):
        lines += [f"FROM s{i - 1} AS s{i}", "WORKDIR rel", "USER $v", "CMD run"]
    return "\n".join(lines) + "\n"


def _stage_args(n: int) -> str:
    lines = ["FROM scratch", "ARG a0=x", *(f"ARG a{i}=$a{i - 1}" for i in range(1, n))]
    return "\n".join([*lines, "LABEL l=$a1"]) + "\n"


def _global_args(n: int) -> str:
    lines = ["ARG a0=x", *(f"ARG a{i}=$a{i - 1}" for i in range(1, n))]
    return "\n".join([*lines, "FROM scratch", "ARG a1", "LABEL l=$a1"]) + "\n"


def _envs(n: int) -> str:
    lines = ["FROM scratch", "ENV e0=x", *(f"ENV e{i}=$e{i - 1}" for i in range(1, n))]
    return "\n".join(lines) + "\n"


def test_reading_chained_stages_does_work_linear_in_the_chain_length() -> None:
    assert _ratio(_chained_stages, 100) < LINEAR


def test_reading_args_in_a_stage_does_work_linear_in_their_number() -> None:
    assert _ratio(_stage_args, 1500) < LINEAR


def test_reading_global_args_does_work_linear_in_their_number() -> None:
    assert _ratio(_global_args, 1500) < LINEAR


def test_reading_envs_does_python_work_linear_in_their_number() -> None:
    # Each ENV still copies the env tuple (C-level) for the step's image config.
    assert _ratio(_envs, 1000) < LINEAR
