"""The plan as data: its stages, each stage's steps, and what it keeps of base images.

``builder.plan.planner`` makes a ``Plan``; the solver walks it. Every type is frozen, and
a step's ``spec`` (``builder.plan.specs``) says what the step does to the filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from builder.frontend import instructions as ins
from builder.plan.specs import Spec
from cache.digest import Digest
from cache.oci import ContainerConfig, ImageConfig, Manifest, Platform


class BaseImage(Protocol):
    """What a plan keeps of a base image read from the store (``cache.images.StoredImage``
    is one): the planner reads its config, the solver unpacks its layers."""

    @property
    def digest(self) -> Digest: ...
    @property
    def manifest(self) -> Manifest: ...
    @property
    def config(self) -> ImageConfig: ...


@dataclass(frozen=True)
class PlannedStep:
    """One instruction of a stage, expanded, with the config it leaves behind."""

    id: str  # "<dockerfile>#<stage>#<position>": the same step across builds
    stage: int
    position: int
    instruction: ins.Instruction
    spec: Spec | None  # None: a metadata-only step
    created_by: str
    key_text: str
    config: ContainerConfig
    # The stages whose result the step reads (COPY --from, RUN --mount=from): the
    # solver starts the step once they are built, not the whole stage.
    reads: frozenset[int] = frozenset()

    @property
    def title(self) -> str:
        return self.instruction.original


@dataclass(frozen=True)
class StagePlan:
    index: int
    name: str | None
    base_name: str  # "scratch", an image name, or "stage:<index>"
    base_stage: int | None
    base_image: BaseImage | None
    base_config: ImageConfig
    steps: tuple[PlannedStep, ...]
    deps: frozenset[int]  # base_stage and every step's ``reads``
    triggers: int = 0  # the first steps that are the base image's ONBUILD triggers
    only_stage: bool = False  # the Dockerfile has this stage alone (no name in progress)
    numbers: tuple[int, ...] = ()  # each step's number in progress (builder.plan.stepnumbers)
    total: int = 0  # the stage's step count in progress
    # What the stage is built for: FROM --platform, else its base stage's, else the
    # build's target platform. Its steps' keys carry it; its RUNs run as it.
    platform: Platform = field(default_factory=Platform)
    shown_platform: str = ""  # in progress labels: set in multi-platform builds

    @property
    def label(self) -> str:
        return self.name or f"stage-{self.index}"


@dataclass(frozen=True)
class Plan:
    stages: tuple[StagePlan, ...]  # only those the target needs, dependencies first
    target: int
    warnings: tuple[str, ...]

    def stage(self, index: int) -> StagePlan:
        return next(s for s in self.stages if s.index == index)
