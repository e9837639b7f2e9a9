"""Step numbers as BuildKit shows them in progress (``[stage n/total] INSTR``).

BuildKit numbers a stage's steps while converting the Dockerfile (dockerfile2llb
convert.go): ``cmdTotal`` counts a FROM of an image (not scratch, not a stage), each
RUN, COPY, ADD and WORKDIR written in the stage (buildDispatchStates) and each ONBUILD
trigger of the base (initOnBuildTriggers); ``prefixCommand`` gives the next number to
each step that makes a vertex: the FROM of an image (1), then each RUN, COPY, ADD and
each WORKDIR other than ``/``. Computed once per stage at plan time, so showing a step
costs O(1) however many the stage has.
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.frontend import instructions as ins
from builder.plan.specs import Spec

_COUNTED = (ins.Run, ins.Copy, ins.Workdir)  # Copy includes Add


def step_numbers(
    steps: Sequence[tuple[ins.Instruction, Spec | None]], triggers: int, from_image: bool
) -> tuple[tuple[int, ...], int]:
    """(the number shown for each step, the stage's total); ``steps`` are the stage's
    (instruction, spec) pairs, its first ``triggers`` the base image's ONBUILD ones."""
    total = int(from_image) + triggers
    total += sum(1 for i, _ in steps[triggers:] if isinstance(i, _COUNTED))
    numbers: list[int] = []
    number = int(from_image)
    for _, spec in steps:
        number += spec is not None
        numbers.append(number)
    return tuple(numbers), total
