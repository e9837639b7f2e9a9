"""Typed Dockerfile instructions: one frozen dataclass per instruction.

Words are kept as written (quotes and ``$VAR`` references still in them); the planner
expands them with :mod:`builder.frontend.expand` using the ARG/ENV values in scope, as BuildKit
does at dispatch time. Flags are already checked against the set each instruction
accepts (BuildKit's ``BFlags``), so a typo such as ``COPY --form=x`` never gets this far.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from builder.errors import DockerfileError


@dataclass(frozen=True)
class Location:
    """Where an instruction is: 1-based lines, ``line`` being the first."""

    file: str
    line: int
    end_line: int


@dataclass(frozen=True)
class Heredoc:
    """An inline file from ``<<NAME``.

    ``content`` has the leading tabs removed when the marker was ``<<-``; ``expand`` is
    False when any part of the delimiter was quoted (``<<'EOF'``), meaning the content
    must not have variables expanded.
    """

    name: str
    content: str
    expand: bool


@dataclass(frozen=True)
class ParseWarning:
    """Something BuildKit accepts but warns about (e.g. an empty continuation line)."""

    message: str
    detail: str
    line: int


@dataclass(frozen=True)
class Instruction:
    """Base of all instructions.

    ``original`` is the instruction as one logical line (continuations joined, outer
    blanks trimmed), for messages and image history.
    """

    location: Location
    original: str


@dataclass(frozen=True)
class From(Instruction):
    """``FROM [--platform=P] image [AS name]``; ``name`` is lower-cased."""

    image: str
    name: str | None
    platform: str | None


@dataclass(frozen=True)
class Run(Instruction):
    """``RUN``. Shell form: ``command == (script,)`` with heredoc markers left in place;
    exec form: the JSON array's strings. ``network``/``security`` are None when not given.
    """

    command: tuple[str, ...]
    shell_form: bool
    mounts: tuple[str, ...]
    network: str | None
    security: str | None
    heredocs: tuple[Heredoc, ...]


@dataclass(frozen=True)
class Copy(Instruction):
    """``COPY``. ``sources`` are the path arguments; heredoc sources (``<<EOF``) are
    not in ``sources`` but in ``heredocs``, in order, as BuildKit separates them.
    """

    sources: tuple[str, ...]
    dest: str
    from_: str | None
    chown: str | None
    chmod: str | None
    link: bool
    parents: bool
    excludes: tuple[str, ...]
    heredocs: tuple[Heredoc, ...]


@dataclass(frozen=True)
class Add(Copy):
    """``ADD``: a Copy (``from_`` None, ``parents`` False) plus ADD's own flags.

    ``unpack`` is None when ``--unpack`` was not given (ADD then decides by source type).
    """

    checksum: str | None
    keep_git_dir: bool
    unpack: bool | None


@dataclass(frozen=True)
class Env(Instruction):
    """``ENV k v`` or ``ENV k=v k2="a b"``: (key, raw value) pairs in order."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Arg(Instruction):
    """``ARG name[=default] ...``: (name, raw default or None) pairs."""

    args: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Workdir(Instruction):
    path: str


@dataclass(frozen=True)
class User(Instruction):
    user: str


@dataclass(frozen=True)
class Cmd(Instruction):
    """``CMD``; an empty command means ``CMD []`` (exec form) or a bare ``CMD``."""

    command: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True)
class Entrypoint(Instruction):
    command: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True)
class Label(Instruction):
    """(key, raw value) pairs, as for Env."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Maintainer(Instruction):
    name: str


@dataclass(frozen=True)
class Expose(Instruction):
    ports: tuple[str, ...]


@dataclass(frozen=True)
class Volume(Instruction):
    """Paths from the JSON or the plain form, each trimmed and non-empty."""

    paths: tuple[str, ...]


@dataclass(frozen=True)
class StopSignal(Instruction):
    signal: str


@dataclass(frozen=True)
class Shell(Instruction):
    """``SHELL ["executable", "args"...]``; BuildKit accepts only the JSON form."""

    shell: tuple[str, ...]


@dataclass(frozen=True)
class Healthcheck(Instruction):
    """``HEALTHCHECK NONE`` (``test`` None) or ``HEALTHCHECK [flags] CMD ...``.

    ``test`` is ``("CMD", *args)`` for the JSON form and ``("CMD-SHELL", script)``
    otherwise. The durations are raw flag values, already checked to be valid Go
    durations of at least 1ms (or 0); ``retries`` a non-negative integer.
    """

    test: tuple[str, ...] | None
    interval: str | None
    timeout: str | None
    start_period: str | None
    start_interval: str | None
    retries: str | None


@dataclass(frozen=True)
class Onbuild(Instruction):
    """``ONBUILD <trigger>``: the trigger's raw text (heredoc bodies appended), to be
    parsed when a child image builds FROM this one. Never ONBUILD, FROM or MAINTAINER.
    """

    trigger: str


@dataclass(frozen=True)
class Stage:
    """One build stage: its FROM and the instructions after it, in order."""

    index: int
    name: str | None
    base: From
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile.

    ``directives`` are the parser directives found (``syntax``, ``escape``, ``check``)
    as (name, value); ``global_args`` the ARGs before the first FROM; ``warnings`` what
    BuildKit would warn about.
    """

    file: str
    escape: str
    directives: tuple[tuple[str, str], ...]
    global_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    warnings: tuple[ParseWarning, ...] = field(default=())
    lines: tuple[str, ...] = field(default=(), repr=False)  # the source, for # check= comments


class FlagKind(Enum):
    """How a flag takes its value (BuildKit's BFlags types)."""

    STRING = "string"  # --name=value, once
    BOOL = "bool"  # --name, --name=true|false, once
    STRINGS = "strings"  # --name=value, repeatable


@dataclass(frozen=True)
class Flags:
    """Parsed ``--flag`` values of one instruction: only flags that were given appear."""

    values: Mapping[str, str | bool | tuple[str, ...]]

    def string(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if isinstance(value, str) else None

    def boolean(self, name: str) -> bool | None:
        value = self.values.get(name)
        return value if isinstance(value, bool) else None

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.values.get(name)
        return value if isinstance(value, tuple) else ()


def parse_flags(keyword: str, flags: tuple[str, ...], accepted: Mapping[str, FlagKind]) -> Flags:
    """Check ``flags`` (``--name[=value]`` words) against what ``keyword`` accepts.

    Raises DockerfileError (no location) naming the offending flag, with BuildKit's
    wording: unknown flag, duplicate flag, missing value, non-boolean value.
    """
    values: dict[str, str | bool | tuple[str, ...]] = {}
    for word in flags:
        if word == "--":
            break
        if not word.startswith("--"):
            raise DockerfileError(f"arg should start with -- : {word}")
        name, has_value, value = word[2:].partition("=")
        kind = accepted.get(name)
        if kind is None:
            raise DockerfileError(f"unknown flag: --{name}", hint=_flags_hint(keyword, accepted))
        if name in values and kind is not FlagKind.STRINGS:
            raise DockerfileError(
                f"duplicate flag specified: --{name}", hint="give each flag only once"
            )
        values[name] = _flag_value(name, kind, bool(has_value), value, values.get(name))
    return Flags(values)


def _flag_value(
    name: str, kind: FlagKind, has_value: bool, value: str, previous: object
) -> str | bool | tuple[str, ...]:
    if kind is FlagKind.BOOL:
        if has_value and not value:
            raise DockerfileError(f"missing a value on flag: --{name}")
        if value.lower() in ("true", ""):
            return True
        if value.lower() == "false":
            return False
        raise DockerfileError(
            f"expecting boolean value for flag --{name}, not: {value}",
            hint=f"use --{name}, --{name}=true or --{name}=false",
        )
    if not has_value:
        raise DockerfileError(f"missing a value on flag: --{name}", hint=f"write --{name}=<value>")
    if kind is FlagKind.STRINGS:
        return (*(previous if isinstance(previous, tuple) else ()), value)
    return value


def _flags_hint(keyword: str, accepted: Mapping[str, FlagKind]) -> str:
    if not accepted:
        return f"{keyword} takes no flags"
    names = ", ".join(f"--{name}" for name in sorted(accepted))
    return f"{keyword} accepts {names}"
