"""BuildKit's build checks that need only the instructions' text: casing, stage names,
instruction forms (JSON vs shell, legacy ``key value``), EXPOSE formats and repeated
CMD/ENTRYPOINT/HEALTHCHECK.

Each rule is a function ``Dockerfile -> list[Finding]``; rule names are BuildKit's so
``# check=skip=<Rule>`` means the same thing in both tools. Messages state the same
facts as BuildKit's, in our words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from builder.frontend import instructions as ins
from builder.frontend.stages import stage_has, stage_tree


@dataclass(frozen=True)
class Finding:
    """One rule violation: BuildKit's rule name, the 1-based line, what is wrong."""

    rule: str
    line: int
    message: str


Rule = Callable[[ins.Dockerfile], list[Finding]]

RESERVED_STAGE_NAMES = frozenset({"scratch", "context"})
_ONCE_PER_STAGE = (
    (ins.Cmd, "CMD"),
    (ins.Entrypoint, "ENTRYPOINT"),
    (ins.Healthcheck, "HEALTHCHECK"),
)


def keyword_of(instruction: ins.Instruction) -> str:
    """The instruction's keyword exactly as written (``run``, ``Run``, ``RUN``)."""
    return instruction.original.split(None, 1)[0]


def after_flags(original: str) -> list[str]:
    """The blank-separated words after the keyword and any leading ``--flag`` words."""
    words = original.split()[1:]
    while words and words[0].startswith("--"):
        words.pop(0)
    return words


def all_instructions(df: ins.Dockerfile) -> Iterator[ins.Instruction]:
    """Every instruction in file order: global ARGs, then each stage's FROM and body."""
    yield from df.global_args
    for stage in df.stages:
        yield stage.base
        yield from stage.instructions


def _written_stage_name(base: ins.From) -> str | None:
    words = after_flags(base.original)
    return words[2] if len(words) == 3 and words[1].lower() == "as" else None


def stage_name_casing(df: ins.Dockerfile) -> list[Finding]:
    found: list[Finding] = []
    for stage in df.stages:
        name = _written_stage_name(stage.base)
        if name is not None and name != name.lower():
            found.append(
                Finding(
                    "StageNameCasing",
                    stage.base.location.line,
                    f"Stage name '{name}' should be lowercase",
                )
            )
    return found


def from_as_casing(df: ins.Dockerfile) -> list[Finding]:
    found: list[Finding] = []
    for stage in df.stages:
        words = after_flags(stage.base.original)
        if len(words) != 3 or words[1].lower() != "as":
            continue
        keyword, as_word = keyword_of(stage.base), words[1]
        if (keyword.isupper() and not as_word.isupper()) or (
            keyword.islower() and not as_word.islower()
        ):
            message = f"'{as_word}' and '{keyword}' keywords' casing do not match"
            found.append(Finding("FromAsCasing", stage.base.location.line, message))
    return found


def consistent_instruction_casing(df: ins.Dockerfile) -> list[Finding]:
    keywords = [(keyword_of(i), i.location.line) for i in all_instructions(df)]
    lower = sum(1 for k, _ in keywords if k.islower())
    upper = sum(1 for k, _ in keywords if k.isupper())
    majority_lower = lower > upper  # a tie counts as uppercase, as in BuildKit
    found: list[Finding] = []
    for keyword, line in keywords:
        if keyword.islower() if majority_lower else keyword.isupper():
            continue
        case = "lowercase" if majority_lower else "uppercase"
        message = f"Command '{keyword}' should match the case of the command majority ({case})"
        found.append(Finding("ConsistentInstructionCasing", line, message))
    return found


def reserved_stage_name(df: ins.Dockerfile) -> list[Finding]:
    return [
        Finding(
            "ReservedStageName",
            s.base.location.line,
            f"'{s.name}' is a reserved name (an empty base or the build context) and "
            "should not name a stage",
        )
        for s in df.stages
        if s.name in RESERVED_STAGE_NAMES
    ]


def json_args_recommended(df: ins.Dockerfile) -> list[Finding]:
    # A SHELL in the stage or the stages it derives from means the shell form is a
    # deliberate choice; BuildKit stays quiet then too.
    own = stage_has(df, lambda i: isinstance(i, ins.Shell))
    inherited = stage_tree(df).inherited(own)
    found: list[Finding] = []
    for stage in df.stages:
        if own[stage.index] or inherited[stage.index]:
            continue
        for i in stage.instructions:
            if isinstance(i, ins.Cmd | ins.Entrypoint) and i.shell_form and i.command:
                name = keyword_of(i).upper()
                message = (
                    f"JSON arguments recommended for {name}: in shell form the command runs "
                    "under /bin/sh -c and does not receive OS signals"
                )
                found.append(Finding("JSONArgsRecommended", i.location.line, message))
    return found


def maintainer_deprecated(df: ins.Dockerfile) -> list[Finding]:
    return [
        Finding(
            "MaintainerDeprecated",
            i.location.line,
            "MAINTAINER is deprecated; use LABEL org.opencontainers.image.authors=...",
        )
        for i in all_instructions(df)
        if isinstance(i, ins.Maintainer)
    ]


def workdir_relative_path(df: ins.Dockerfile) -> list[Finding]:
    # Only a stage's first WORKDIR can depend on the base image's directory: fixing it
    # fixes every later relative one (BuildKit reports the first only, too).
    inherited = stage_tree(df).inherited(stage_has(df, lambda i: isinstance(i, ins.Workdir)))
    found: list[Finding] = []
    for stage in df.stages:
        first = next((i for i in stage.instructions if isinstance(i, ins.Workdir)), None)
        if inherited[stage.index] or first is None or first.path.startswith(("/", "$")):
            continue
        message = (
            f"Relative workdir '{first.path}' depends on the base image's working "
            "directory; set an absolute WORKDIR first"
        )
        found.append(Finding("WorkdirRelativePath", first.location.line, message))
    return found


def first_word(text: str, escape: str) -> str:
    """The first blank-separated word of ``text``, blanks inside quotes or escaped kept
    (BuildKit's parseWords, quotes left in)."""
    word: list[str] = []
    quote = ""
    chars = iter(text.lstrip())
    for char in chars:
        if char == escape and quote != "'":
            word.append(char + next(chars, ""))
        elif quote:
            quote = "" if char == quote else quote
            word.append(char)
        elif char in "'\"":
            quote = char
            word.append(char)
        elif char.isspace():
            break
        else:
            word.append(char)
    return "".join(word)


def legacy_key_value_format(df: ins.Dockerfile) -> list[Finding]:
    found: list[Finding] = []
    for i in all_instructions(df):
        if not isinstance(i, ins.Env | ins.Label):
            continue
        rest = i.original.split(None, 1)[1] if len(i.original.split(None, 1)) > 1 else ""
        if rest and "=" not in first_word(rest, df.escape):
            name = keyword_of(i).upper()
            message = f"'{name} key=value' should be used instead of the legacy '{name} key value'"
            found.append(Finding("LegacyKeyValueFormat", i.location.line, message))
    return found


def expose_formats(df: ins.Dockerfile) -> list[Finding]:
    found: list[Finding] = []
    for i in all_instructions(df):
        if not isinstance(i, ins.Expose):
            continue
        for port in i.ports:
            if "$" in port:
                continue  # only known after expansion
            if ":" in port:
                message = (
                    f"EXPOSE should not give an IP address or a host-port mapping, found '{port}'"
                )
                found.append(Finding("ExposeInvalidFormat", i.location.line, message))
            _, slash, proto = port.partition("/")
            if slash and proto != proto.lower():
                message = f"Protocol in EXPOSE '{port}' should be lowercase"
                found.append(Finding("ExposeProtoCasing", i.location.line, message))
    return found


def multiple_instructions_disallowed(df: ins.Dockerfile) -> list[Finding]:
    found: list[Finding] = []
    for stage in df.stages:
        for kind, name in _ONCE_PER_STAGE:
            lines = [i.location.line for i in stage.instructions if isinstance(i, kind)]
            message = f"Multiple {name} instructions in one stage: only the last one takes effect"
            found.extend(Finding("MultipleInstructionsDisallowed", n, message) for n in lines[:-1])
    return found


TEXT_RULES: tuple[Rule, ...] = (
    stage_name_casing,
    from_as_casing,
    consistent_instruction_casing,
    reserved_stage_name,
    json_args_recommended,
    maintainer_deprecated,
    workdir_relative_path,
    legacy_key_value_format,
    expose_formats,
    multiple_instructions_disallowed,
)
