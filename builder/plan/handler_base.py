"""What every instruction handler shares: the build-wide context and the outcome type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from builder.errors import BuildError, DockerfileError
from builder.frontend import instructions as ins
from builder.frontend.expand import expand_word
from builder.plan.specs import Spec
from builder.plan.state import StageState

# Registers an image named by COPY --from (or RUN --mount from=) as a stage of its own
# and returns that stage's index; the planner owns the registry.
ImageStage = Callable[[str, ins.Instruction], int]


@dataclass(frozen=True)
class PlanContext:
    """Build-wide facts the handlers need; never mutated."""

    file: str
    escape: str
    build_args: Mapping[str, str]
    meta_args: Mapping[str, str | None]
    network: str
    stage_names: Mapping[str, int]  # lower-cased stage name -> index
    current_stage: int
    image_stage: ImageStage | None = None
    allow_insecure: bool = False  # --allow security.insecure: RUN --security=insecure runs
    allow_network_host: bool = False  # --allow network.host: RUN --network=host runs


@dataclass(frozen=True)
class Outcome:
    state: StageState
    spec: Spec | None  # None: the instruction changes only the config
    created_by: str
    key_text: str  # the instruction after expansion, for the cache key


def fail(instr: ins.Instruction, message: str, hint: str | None = None) -> BuildError:
    return DockerfileError(message, file=instr.location.file, line=instr.location.line, hint=hint)


def expand_in(word: str, state: StageState, ctx: PlanContext, instr: ins.Instruction) -> str:
    try:
        return expand_word(word, state.expansion_env(), escape=ctx.escape)
    except BuildError as exc:
        raise exc.located(instr.location.file, instr.location.line) from None
