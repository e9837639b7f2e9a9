"""How progress names a step: ``[stage n/total] INSTR``, as BuildKit numbers it.

A module of its own so that both views (``builder.cli.progress`` and the rich one,
``builder.cli.progress_tty``) use it without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from builder.plan.planner import PlannedStep, StagePlan


def step_label(stage: StagePlan, step: PlannedStep) -> str:
    """The step's name in progress, numbered as BuildKit numbers it
    (``builder.plan.stepnumbers``): ``[name n/total] INSTR``, ``n`` right-aligned to the
    total's width. The name is the stage's (``stage-<i>`` when unnamed), left out when
    the Dockerfile has one stage; a trigger's instruction reads ``ONBUILD INSTR``. In a
    multi-platform build the stage's platform comes first, as in BuildKit:
    ``[linux/arm64 build 2/3]``."""
    if stage.total == 0:
        return step.title
    number = stage.numbers[step.position - 1]
    name = "" if stage.only_stage else f"{stage.label} "
    if stage.shown_platform:
        name = f"{stage.shown_platform} {name}"
    onbuild = "ONBUILD " if step.position <= stage.triggers else ""
    return f"[{name}{number:>{len(str(stage.total))}}/{stage.total}] {onbuild}{step.title}"
