"""The ``# check=`` parser directive applied to what the parser warned about.

BuildKit's build checks report rule violations as warnings; ``# check=skip=Rule1,Rule2``
(or ``skip=all``) silences rules and ``error=true`` turns any remaining warning into a
failed build ("lint violation found for rules: ..."). The parser reports
``NoEmptyContinuation``; the other rules live in :mod:`builder.frontend.checks.rules`
and :mod:`builder.frontend.checks.variables`. The directive's syntax is checked in full so
a typo is an error, as in BuildKit, rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from builder.errors import DockerfileError
from builder.frontend.checks.copy import ContextCopy, copy_ignored_file
from builder.frontend.checks.inline import skipped_here
from builder.frontend.checks.rules import TEXT_RULES, Finding
from builder.frontend.checks.variables import VAR_RULES, undefined_var
from builder.frontend.instructions import Dockerfile

EMPTY_CONTINUATION_RULE = "NoEmptyContinuation"
_HINT = "write # check=skip=<rule,...|all>;error=<true|false>;experimental=<rule,...|all>"
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True)
class CheckOptions:
    """What ``# check=`` asked for: rules to skip (``skip_all`` for ``skip=all``) and
    whether a remaining warning fails the build."""

    skip: frozenset[str] = frozenset()
    skip_all: bool = False
    error: bool = False


def parse_check(value: str, file: str) -> CheckOptions:
    """Parse a ``check`` directive value; raises DockerfileError (line 1) when malformed."""
    options = CheckOptions()
    if not value.strip():
        return options
    for part in value.strip().split(";", 2):
        key, sep, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep:
            raise DockerfileError(f"invalid check option {part!r}", file=file, line=1, hint=_HINT)
        if key == "skip" and raw == "all":
            options = CheckOptions(options.skip, True, options.error)
        elif key == "skip":
            names = frozenset(n.strip() for n in raw.split(",") if n.strip())
            options = CheckOptions(options.skip | names, options.skip_all, options.error)
        elif key == "experimental":
            pass  # opts into experimental rules; pybuild implements none of them
        elif key == "error" and raw in _TRUE | _FALSE:
            options = CheckOptions(options.skip, options.skip_all, raw in _TRUE)
        elif key == "error":
            message = f"failed to parse check option {part!r}: invalid boolean {raw!r}"
            raise DockerfileError(message, file=file, line=1, hint=_HINT)
        else:
            raise DockerfileError(f"invalid check option {key!r}", file=file, line=1, hint=_HINT)
    return options


@dataclass(frozen=True)
class CheckFacts:
    """What the planner learnt that the dispatch-time checks need, as BuildKit knows it
    while dispatching: ``base_env``, the ENV names of the base image of each stage built
    on an image whose config was read (UndefinedVar); ``copies``, the expanded context
    sources of each COPY/ADD and ``ignore_patterns``, the ``.dockerignore``'s
    (CopyIgnoredFile)."""

    base_env: Mapping[int, frozenset[str]] = field(default_factory=dict)
    copies: tuple[ContextCopy, ...] = ()
    ignore_patterns: tuple[str, ...] = ()


def findings(df: Dockerfile, facts: CheckFacts | None = None) -> list[Finding]:
    """Every rule violation in ``df`` (the parser's and each build check's), by line;
    the ``# check=`` directive is not applied. Without ``facts`` UndefinedVar checks
    only stages rooted in scratch, and CopyIgnoredFile is not checked."""
    found = [
        Finding(EMPTY_CONTINUATION_RULE, w.line, f"{w.message} ({w.detail})") for w in df.warnings
    ]
    for rule in (*TEXT_RULES, *VAR_RULES):
        found.extend(rule(df))
    found.extend(undefined_var(df, facts.base_env if facts else None))
    if facts is not None:
        found.extend(copy_ignored_file(facts.copies, facts.ignore_patterns))
    return sorted(found, key=lambda f: f.line)


# Rules BuildKit runs while dispatching a stage (dockerfile2llb/convert.go), so only for
# the stages being built; the rest run on the whole Dockerfile when it is parsed.
DISPATCH_RULES = frozenset(
    {
        "JSONArgsRecommended",
        "WorkdirRelativePath",
        "LegacyKeyValueFormat",
        "UndefinedVar",
        "ExposeInvalidFormat",
        "ExposeProtoCasing",
        "SecretsUsedInArgOrEnv",
        "CopyIgnoredFile",
        "MultipleInstructionsDisallowed",
    }
)


def check_warnings(
    df: Dockerfile,
    override: str | None = None,
    built: Callable[[int], bool] | None = None,
    facts: CheckFacts | None = None,
) -> tuple[str, ...]:
    """Build-check warnings (``file:line: Rule: message``), minus the skipped rules;
    raises DockerfileError at the first one's line when ``error=true`` and any remain.
    ``override`` (``--build-arg BUILDKIT_DOCKERFILE_CHECK``) replaces the directive, as
    in BuildKit (dockerui/config.go LinterConfig, dockerfile2llb newRuleLinter);
    ``built`` keeps a DISPATCH_RULES finding only if its line is in a built stage;
    ``facts`` (the planner's) feed UndefinedVar and CopyIgnoredFile."""
    if override is not None:
        try:
            options = parse_check(override, df.file)
        except DockerfileError as exc:
            raise DockerfileError(
                f"failed to parse BUILDKIT_DOCKERFILE_CHECK: {exc.message}", hint=exc.hint
            ) from None
    else:
        value = next((v for k, v in df.directives if k == "check"), "")
        options = parse_check(value, df.file)
    if options.skip_all:
        return ()
    kept = [f for f in findings(df, facts) if f.rule not in options.skip]
    kept = [f for f in kept if not skipped_here(df.lines, f.line, f.rule)]
    if built is not None:  # ``built(line)``: the line is in a stage being built
        kept = [f for f in kept if f.rule not in DISPATCH_RULES or built(f.line)]
    if kept and options.error:
        rules = ", ".join(dict.fromkeys(f.rule for f in kept))
        first = kept[0]
        raise DockerfileError(
            f"lint violation found for rules: {rules} ({first.rule}: {first.message})",
            file=df.file,
            line=first.line,
            hint=f"fix the Dockerfile, or silence the rule with # check=skip={first.rule}",
        )
    return tuple(f"{df.file}:{f.line}: {f.rule}: {f.message}" for f in kept)
