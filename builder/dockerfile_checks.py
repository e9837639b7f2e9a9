"""The ``# check=`` parser directive applied to what the parser warned about.

BuildKit's build checks report rule violations as warnings; ``# check=skip=Rule1,Rule2``
(or ``skip=all``) silences rules and ``error=true`` turns any remaining warning into a
failed build ("lint violation found for rules: ..."). The only rule the parser reports
here is ``NoEmptyContinuation``; the directive's syntax is checked in full so a typo is
an error, as in BuildKit, rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.errors import DockerfileError
from builder.instructions import Dockerfile

EMPTY_CONTINUATION_RULE = "NoEmptyContinuation"
_HINT = "write # check=skip=<rule,...|all>;error=<true|false>"
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
    for part in value.strip().split(";", 1):
        key, sep, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep:
            raise DockerfileError(f"invalid check option {part!r}", file=file, line=1, hint=_HINT)
        if key == "skip" and raw == "all":
            options = CheckOptions(options.skip, True, options.error)
        elif key == "skip":
            names = frozenset(n.strip() for n in raw.split(",") if n.strip())
            options = CheckOptions(options.skip | names, options.skip_all, options.error)
        elif key == "error" and raw in _TRUE | _FALSE:
            options = CheckOptions(options.skip, options.skip_all, raw in _TRUE)
        elif key == "error":
            message = f"failed to parse check option {part!r}: invalid boolean {raw!r}"
            raise DockerfileError(message, file=file, line=1, hint=_HINT)
        else:
            raise DockerfileError(f"invalid check option {key!r}", file=file, line=1, hint=_HINT)
    return options


def check_warnings(df: Dockerfile) -> tuple[str, ...]:
    """The parser's warnings as build warnings (``file:line: Rule: message``), minus the
    skipped rules; raises DockerfileError when ``error=true`` and any remain."""
    value = next((v for k, v in df.directives if k == "check"), "")
    options = parse_check(value, df.file)
    if options.skip_all or EMPTY_CONTINUATION_RULE in options.skip or not df.warnings:
        return ()
    if options.error:
        first = df.warnings[0]
        raise DockerfileError(
            f"lint violation found for rules: {EMPTY_CONTINUATION_RULE} ({first.message})",
            file=df.file,
            line=first.line,
            hint="remove the empty line inside the continued instruction, or "
            f"# check=skip={EMPTY_CONTINUATION_RULE}",
        )
    return tuple(
        f"{df.file}:{w.line}: {EMPTY_CONTINUATION_RULE}: {w.message} ({w.detail})"
        for w in df.warnings
    )
