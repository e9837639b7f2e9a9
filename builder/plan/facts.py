"""What a plan tells the dispatch-time build checks (``builder.frontend.checks.directive``).

BuildKit runs UndefinedVar and CopyIgnoredFile while dispatching a stage, when the base
image's config has been read and each COPY/ADD source expanded; the planner is where
pybuild knows the same things.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from builder.frontend import instructions as ins
from builder.frontend.checks.copy import ContextCopy
from builder.frontend.checks.directive import CheckFacts
from builder.plan.specs import CopySpec
from builder.plan.stages import StagePlan


def _defined_names(instructions: Iterable[ins.Instruction]) -> set[str]:
    names: set[str] = set()
    for i in instructions:
        if isinstance(i, ins.Env):
            names.update(k for k, _ in i.pairs)
        elif isinstance(i, ins.Arg):
            names.update(n for n, _ in i.args)
    return names


def check_facts(
    df: ins.Dockerfile, stages: Iterable[StagePlan], ignore_patterns: Sequence[str] = ()
) -> CheckFacts:
    """The facts of the planned ``stages``: for each one built on an image, the ENV
    names its config gives (with the default PATH, and what the image's ONBUILD
    triggers define, which run first); every COPY/ADD's context sources."""
    base_env: dict[int, frozenset[str]] = {}
    copies: list[ContextCopy] = []
    for stage in stages:
        if stage.index >= len(df.stages):
            continue  # an image named by COPY --from: no instructions of ours
        if stage.base_stage is None and stage.base_image is not None:
            names = {e.partition("=")[0] for e in stage.base_config.config.env}
            triggers = [s.instruction for s in stage.steps[: stage.triggers]]
            base_env[stage.index] = frozenset(names | _defined_names(triggers))
        for step in stage.steps:
            spec = step.spec
            if isinstance(spec, CopySpec) and spec.from_stage is None and spec.sources:
                add = isinstance(step.instruction, ins.Add)
                copies.append(ContextCopy(step.instruction.location.line, add, spec.sources))
    return CheckFacts(base_env, tuple(copies), tuple(ignore_patterns))
