"""From a parsed Dockerfile to the stages and steps a build needs.

Planning is pure apart from reading base images' configs from the store: it expands
words, threads each stage's config through its instructions (``builder.plan.handlers``), prunes
stages the target does not need, and orders the rest so dependencies come first.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from builder.errors import BuildError, DockerfileError
from builder.frontend import instructions as ins
from builder.frontend.builtin_args import BUILTIN_ARGS, PLATFORM_ARG_NAMES, platform_args
from builder.frontend.checks.directive import check_warnings
from builder.frontend.expand import expand_word
from builder.frontend.onbuild import trigger_instructions
from builder.frontend.suggest import did_you_mean
from builder.plan.facts import check_facts
from builder.plan.handlers import PlanContext, apply
from builder.plan.specs import stages_read
from builder.plan.stages import BaseImage, Plan, PlannedStep, StagePlan
from builder.plan.state import DEFAULT_PATH, StageState, set_env
from builder.plan.stepnumbers import step_numbers
from cache.oci import ImageConfig, Platform
from cache.platforms import PlatformError, parse_platform

# The plan types are part of what planning returns: importable from here as well.
__all__ = [
    "MAX_EPOCH",
    "BaseImage",
    "ImageResolver",
    "Plan",
    "PlanRequest",
    "PlannedStep",
    "StagePlan",
    "check_epoch",
    "declared_epoch",
    "make_plan",
    "source_date_epoch",
]

# A base image by name; the ``From`` passed carries the stage's platform, resolved
# (``linux/arm64``), which is the one to pick from a multi-platform image.
ImageResolver = Callable[[str, ins.From], BaseImage]
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z


@dataclass(frozen=True)
class PlanRequest:
    dockerfile: ins.Dockerfile
    build_args: Mapping[str, str]
    target: str | None
    network: str
    allow_insecure: bool = False  # --allow security.insecure
    allow_network_host: bool = False  # --allow network.host
    ignore_patterns: tuple[str, ...] = ()  # the context's .dockerignore (CopyIgnoredFile)
    # The platform the image is for (TARGET* ARGs, stages without FROM --platform) and
    # the one pybuild runs on (BUILD* ARGs); default: this machine's.
    platform: Platform = field(default_factory=Platform)
    build_platform: Platform = field(default_factory=Platform)
    show_platform: bool = False  # name the platform in progress (multi-platform builds)


def make_plan(request: PlanRequest, resolve_image: ImageResolver) -> Plan:
    """Plan the build; ``resolve_image`` finds a base image by name (or raises BuildError)."""
    df = request.dockerfile
    platforms = platform_args(request.platform, request.build_platform)
    meta_args = _meta_args(df, request.build_args, request.target, platforms)
    names = {s.name: s.index for s in df.stages if s.name}
    target = _target_index(df, request.target, names)
    needed = _needed_stages(df, target, names, meta_args)
    starts = [s.base.location.line for s in df.stages]

    def built(line: int) -> bool:  # a stage runs from its FROM to the next one
        return bisect.bisect_right(starts, line) - 1 in needed

    planned = _plan_needed(request, meta_args, names, needed, resolve_image)
    # After planning, as BuildKit lints while dispatching (base image configs known);
    # raises for # check=error=true before anything runs.
    override = request.build_args.get("BUILDKIT_DOCKERFILE_CHECK")
    facts = check_facts(df, planned.values(), request.ignore_patterns)
    lint = check_warnings(df, override, built, facts)
    declared = {
        n
        for s in planned.values()
        for i in s.steps
        if isinstance(i.instruction, ins.Arg)
        for n, _ in i.instruction.args
    }
    declared |= set(meta_args)
    unused = sorted(k for k in request.build_args if k not in declared | BUILTIN_ARGS)
    if unused:
        lint += (f"build-args not consumed by any ARG: {', '.join(unused)}",)
    # Image stages (COPY --from=<image>) first: the solver starts stages in this order.
    real = len(df.stages)
    order = tuple(planned[i] for i in sorted(planned, key=lambda i: (i < real, i)))
    return Plan(order, target, lint)


def _plan_needed(
    request: PlanRequest,
    meta_args: Mapping[str, str | None],
    names: Mapping[str, int],
    needed: set[int],
    resolve_image: ImageResolver,
) -> dict[int, StagePlan]:
    """Plan the needed stages in order; an ONBUILD trigger of a base image may read a
    stage (``COPY --from``) nothing else needed, so plan again with it until none is new."""
    while True:
        planned: dict[int, StagePlan] = {}
        images = _ImageStages(len(request.dockerfile.stages), resolve_image, planned)
        for stage in request.dockerfile.stages:
            if stage.index in needed:
                planned[stage.index] = _plan_stage(
                    stage, request, meta_args, names, planned, images
                )
        missing = (
            {d for s in planned.values() for d in s.deps} - needed - set(images.by_name.values())
        )
        if not missing:
            return planned
        needed |= missing


class _ImageStages:
    """``COPY --from=<image>``: each image named once becomes a stage without steps
    (index after the Dockerfile's stages), so the solver unpacks it like any base."""

    def __init__(
        self, first: int, resolve_image: ImageResolver, planned: dict[int, StagePlan]
    ) -> None:
        self.first = first
        self.resolve_image = resolve_image
        self.planned = planned
        self.by_name: dict[str, int] = {}
        # Each planned stage's platform; ``stage`` is the one being planned (its
        # COPY --from=<image> is pulled for its platform).
        self.platforms: dict[int, Platform] = {}
        self.stage = 0

    def __call__(self, name: str, instr: ins.Instruction) -> int:
        if name in self.by_name:
            return self.by_name[name]
        platform = str(self.platforms.get(self.stage, Platform()))
        base = ins.From(instr.location, instr.original, name, None, platform)
        image = self.resolve_image(name, base)
        index = self.first + len(self.by_name)
        self.by_name[name] = index
        self.planned[index] = StagePlan(
            index,
            None,
            name,
            None,
            image,
            image.config,
            (),
            frozenset(),
            platform=self.platforms.get(self.stage, Platform()),
        )
        return index


def _meta_args(
    df: ins.Dockerfile,
    build_args: Mapping[str, str],
    target: str | None = None,
    platforms: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """Global ARG values: the automatic platform ARGs and ``TARGETSTAGE``, then what the
    ARGs before the first FROM declare (``--build-arg`` wins over a default)."""
    auto = platforms if platforms is not None else platform_args(Platform(), Platform())
    values: dict[str, str | None] = dict(auto)
    # BuildKit dockerfile2llb/platform.go defaultArgs: the --target as given, else the
    # last stage's name, else "default"; a --build-arg of that name overrides it.
    last = df.stages[-1].name if df.stages else None
    values["TARGETSTAGE"] = build_args.get("TARGETSTAGE", target or last or "default")
    env = {k: v for k, v in values.items() if v is not None}  # kept in step with values
    for arg in df.global_args:
        for name, default in arg.args:
            if name in build_args and name not in PLATFORM_ARG_NAMES:
                values[name] = env[name] = build_args[name]
            elif default is not None:
                try:
                    values[name] = env[name] = expand_word(default, env, escape=df.escape)
                except BuildError as exc:
                    raise exc.located(arg.location.file, arg.location.line) from None
            elif name not in PLATFORM_ARG_NAMES and name != "TARGETSTAGE":
                values[name] = None
                env.pop(name, None)
    return values


def _target_index(df: ins.Dockerfile, target: str | None, names: Mapping[str, int]) -> int:
    if not df.stages:
        raise DockerfileError(
            "the Dockerfile has no FROM instruction",
            file=df.file,
            hint="start the Dockerfile with FROM <image> or FROM scratch",
        )
    if target is None:
        return df.stages[-1].index
    if target.lower() in names:
        return names[target.lower()]
    raise BuildError(
        f'target stage "{target}" could not be found in {df.file}'
        + did_you_mean(target.lower(), names),
        hint="stages: " + (", ".join(sorted(names)) or "(none are named: use FROM ... AS name)"),
    )


def _base_name(stage: ins.Stage, meta_args: Mapping[str, str | None], escape: str) -> str:
    env = {k: v for k, v in meta_args.items() if v is not None}
    try:
        name = expand_word(stage.base.image, env, escape=escape)
    except BuildError as exc:
        raise exc.located(stage.base.location.file, stage.base.location.line) from None
    if not name:
        raise DockerfileError(
            "FROM requires an image name",
            file=stage.base.location.file,
            line=stage.base.location.line,
        )
    return name


def _needed_stages(
    df: ins.Dockerfile, target: int, names: Mapping[str, int], meta_args: Mapping[str, str | None]
) -> set[int]:
    """The target and every stage it reaches through FROM or COPY --from."""
    needed: set[int] = set()
    todo = [target]
    while todo:
        index = todo.pop()
        if index in needed:
            continue
        needed.add(index)
        stage = df.stages[index]
        base = _base_name(stage, meta_args, df.escape).lower()
        if base in names and names[base] < index:
            todo.append(names[base])
        for instr in stage.instructions:
            if isinstance(instr, ins.Copy) and instr.from_:
                ref = instr.from_.lower()
                if ref.isascii() and ref.isdigit() and len(ref) < 10 and int(ref) < index:
                    todo.append(int(ref))
                elif ref in names and names[ref] < index:
                    todo.append(names[ref])
    return needed


def _plan_stage(
    stage: ins.Stage,
    request: PlanRequest,
    meta_args: Mapping[str, str | None],
    names: Mapping[str, int],
    planned: Mapping[int, StagePlan],
    images: _ImageStages,
) -> StagePlan:
    df = request.dockerfile
    base_name = _base_name(stage, meta_args, df.escape)
    base_stage = names.get(base_name.lower())
    base_image: BaseImage | None = None
    platform = _stage_platform(stage.base, meta_args, df.escape, request.platform)
    images.stage = stage.index
    if base_stage is not None and base_stage < stage.index:
        base_config = _stage_result_config(planned[base_stage])
        base_label = f"stage:{base_stage}"
        if not stage.base.platform:  # BuildKit: a stage's platform is its base stage's
            platform = planned[base_stage].platform
    elif base_name == "scratch":
        # BuildKit gives a scratch stage WorkingDir "/" (checked against dockerd's BuildKit).
        scratch = ImageConfig(
            architecture=platform.architecture, os=platform.os, variant=platform.variant
        )
        scratch = replace(scratch, config=replace(scratch.config, working_dir="/"))
        base_stage, base_config, base_label = None, scratch, "scratch"
    else:
        base_stage = None
        wanted = replace(stage.base, platform=str(platform))
        base_image = images.resolve_image(base_name, wanted)
        base_config, base_label = base_image.config, base_name
    images.platforms[stage.index] = platform
    config = base_config.config
    if not any(e.startswith("PATH=") for e in config.env):
        config = replace(config, env=set_env(config.env, "PATH", DEFAULT_PATH))
    instructions: tuple[ins.Instruction, ...] = stage.instructions
    if config.on_build:
        triggers = trigger_instructions(config.on_build, stage.base, base_name)
        instructions = (*triggers, *instructions)
        config = replace(config, on_build=())
    state = StageState(config, author=base_config.author)
    ctx = PlanContext(
        df.file,
        df.escape,
        request.build_args,
        meta_args,
        request.network,
        names,
        stage.index,
        images,
        allow_insecure=request.allow_insecure,
        allow_network_host=request.allow_network_host,
    )
    steps = []
    deps = {base_stage} if base_stage is not None else set()
    # A step of a build for another platform than the host's is another step (its last
    # inputs, which explain a miss, and its progress line are its own), also in a
    # $BUILDPLATFORM stage, whose steps still hit the host build's through their keys.
    target = request.platform
    suffix = "" if target == request.build_platform else f"@{target}"
    for position, instr in enumerate(instructions, start=1):
        outcome = apply(state, instr, ctx)
        state = outcome.state
        spec = outcome.spec
        reads = stages_read(spec)
        deps.update(reads)
        steps.append(
            PlannedStep(
                id=f"{df.file}#{stage.index}#{position}{suffix}",
                stage=stage.index,
                position=position,
                instruction=instr,
                spec=spec,
                created_by=outcome.created_by,
                key_text=outcome.key_text,
                config=state.config,
                reads=reads,
            )
        )
    triggers_count = len(instructions) - len(stage.instructions)
    numbers, total = step_numbers(
        [(s.instruction, s.spec) for s in steps], triggers_count, base_image is not None
    )
    return StagePlan(
        stage.index,
        stage.name,
        base_label,
        base_stage,
        base_image,
        # The solver starts the stage's image config from here: author as the stage
        # left it (MAINTAINER), the run config as the base gave it.
        replace(base_config, config=config, author=state.author),
        tuple(steps),
        frozenset(d for d in deps if d is not None),
        triggers=triggers_count,
        only_stage=len(df.stages) == 1,
        numbers=numbers,
        total=total,
        platform=platform,
        shown_platform=_shown_platform(platform, target) if request.show_platform else "",
    )


def _shown_platform(stage: Platform, target: Platform) -> str:
    """How progress names a stage's platform, as BuildKit: ``linux/arm64``, or for a
    stage built on another platform for the target, ``linux/amd64->arm64``."""
    if stage == target:
        return str(target)
    arch = "/".join(p for p in (target.architecture, target.variant) if p)
    return f"{stage}->{arch}"


def _stage_platform(
    base: ins.From, meta_args: Mapping[str, str | None], escape: str, target: Platform
) -> Platform:
    """``FROM --platform=P`` expanded with the global ARGs and parsed; else ``target``."""
    if not base.platform:
        return target
    env = {k: v for k, v in meta_args.items() if v is not None}
    try:
        text = expand_word(base.platform, env, escape=escape)
        return parse_platform(text)
    except BuildError as exc:
        raise exc.located(base.location.file, base.location.line) from None
    except PlatformError as exc:
        raise DockerfileError(
            f"FROM --platform={base.platform}: {exc.message}",
            file=base.location.file,
            line=base.location.line,
            hint=exc.hint,
        ) from None


def _stage_result_config(stage: StagePlan) -> ImageConfig:
    """The config a later FROM <stage> starts from (history/diff_ids filled by the solver)."""
    config = stage.steps[-1].config if stage.steps else stage.base_config.config
    return ImageConfig(**{**stage.base_config.__dict__, "config": config})


def declared_epoch(df: ins.Dockerfile) -> str | None:
    """The default a global ``ARG SOURCE_DATE_EPOCH=<n>`` gives (None: not declared)."""
    return _meta_args(df, {}).get("SOURCE_DATE_EPOCH")


def source_date_epoch(
    build_args: Mapping[str, str], default: int | None, declared: str | None = None
) -> int | None:
    """The image epoch as BuildKit reads it (dockerfile2llb/convert.go getBuildArgValue,
    epoch.go resolveSourceDateEpochValue): ``--build-arg SOURCE_DATE_EPOCH``, else a
    global ARG's default (``declared``); whole seconds, or ``context`` (the build
    context's own time: here ``default``, which is a git context's commit time). Empty
    or unset: ``default`` (``--source-date-epoch`` or the environment)."""
    raw = build_args.get("SOURCE_DATE_EPOCH", declared)
    given = "--build-arg" if "SOURCE_DATE_EPOCH" in build_args else "ARG"
    if raw is None or raw == "" or raw == "context":
        return check_epoch(default, "--source-date-epoch or $SOURCE_DATE_EPOCH")
    try:
        value = int(raw)
    except ValueError:
        raise BuildError(
            f"invalid SOURCE_DATE_EPOCH: {raw} ({given} SOURCE_DATE_EPOCH): expected whole "
            "seconds since 1970 or `context`",
            hint="e.g. --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)",
        ) from None
    return check_epoch(value, f"{given} SOURCE_DATE_EPOCH")


def check_epoch(value: int | None, given: str) -> int | None:
    """``value`` when it is None or a time from 1970 to the end of year 9999 (the range
    an RFC 3339 timestamp in an image config can show), else BuildError."""
    if value is not None and not 0 <= value <= MAX_EPOCH:
        raise BuildError(
            f"invalid SOURCE_DATE_EPOCH: {value} ({given}): out of range",
            hint=f"give whole seconds since 1970, from 0 to {MAX_EPOCH} (9999-12-31)",
        )
    return value
