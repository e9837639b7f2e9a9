"""ONBUILD triggers: the instructions a base image asks its children to run first.

A parent stores each trigger as text in its config's ``OnBuild``; a build that starts
FROM that image parses them again and runs them before the stage's own instructions,
and the child's config drops them (BuildKit: triggers fire once, grandchildren do not
inherit them). ONBUILD, FROM and MAINTAINER are never valid triggers.
"""

from __future__ import annotations

from dataclasses import replace

from builder.errors import BuildError, DockerfileError
from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile

_FORBIDDEN = (ins.Onbuild, ins.Maintainer)


def trigger_instructions(
    triggers: tuple[str, ...], base: ins.From, base_name: str
) -> tuple[ins.Instruction, ...]:
    """Parse ``triggers`` into instructions located at the stage's FROM line.

    Raises DockerfileError (at the FROM) for a trigger that does not parse or that
    BuildKit refuses.
    """
    out: list[ins.Instruction] = []
    for trigger in triggers:
        out.append(_parse_trigger(trigger, base, base_name))
    return tuple(out)


def _parse_trigger(trigger: str, base: ins.From, base_name: str) -> ins.Instruction:
    where = base.location

    def fail(message: str) -> DockerfileError:
        return DockerfileError(
            f"ONBUILD trigger of {base_name} {trigger.splitlines()[0]!r}: {message}",
            file=where.file,
            line=where.line,
            hint="the trigger comes from the base image's config (OnBuild); rebuild the base",
        )

    try:
        parsed = parse_dockerfile(f"FROM scratch\n{trigger}\n", where.file)
    except BuildError as exc:
        raise fail(exc.message) from None
    if len(parsed.stages) != 1 or len(parsed.stages[0].instructions) != 1:
        raise fail("FROM isn't allowed as an ONBUILD trigger")
    instr = parsed.stages[0].instructions[0]
    if isinstance(instr, _FORBIDDEN):
        keyword = "ONBUILD" if isinstance(instr, ins.Onbuild) else "MAINTAINER"
        raise fail(f"{keyword} isn't allowed as an ONBUILD trigger")
    return replace(instr, location=where)
