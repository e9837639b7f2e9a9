"""Dockerfile nodes to typed instructions, with BuildKit's checks.

The equivalent of moby/buildkit ``frontend/dockerfile/instructions/parse.go``: each
instruction checks its flags (:func:`builder.frontend.instructions.parse_flags`), its argument
count and its own rules (stage names, ``SHELL`` in JSON form, ``HEALTHCHECK`` durations,
ONBUILD triggers, heredoc sources of COPY/ADD). Errors are DockerfileErrors without a
location; the caller adds the node's file and line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from builder.errors import DockerfileError
from builder.frontend.durations import parse_duration_ns
from builder.frontend.expand import go_trim_space
from builder.frontend.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    FlagKind,
    Flags,
    From,
    Healthcheck,
    Heredoc,
    Instruction,
    Label,
    Location,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    parse_flags,
)
from builder.frontend.nodes import Node, chomp_heredoc, parse_heredoc_word

_S, _B, _M = FlagKind.STRING, FlagKind.BOOL, FlagKind.STRINGS
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.\-]*")
_ONBUILD_PREFIX = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE)


def instruction_from_node(node: Node, file: str) -> Instruction:
    """One node as its typed instruction; raises DockerfileError without a location."""
    keyword = node.keyword.lower()
    handler = _HANDLERS.get(keyword)
    if handler is None:
        raise _unknown_instruction(node.keyword)
    req = _Request(node, _args(node), Location(file, node.start_line, node.end_line))
    return handler(req)


def _unknown_instruction(keyword: str) -> DockerfileError:
    if not keyword:
        return DockerfileError(
            "unknown instruction: (empty)",
            hint="a line continuation at the end of the file has nothing to continue",
        )
    close = difflib.get_close_matches(keyword.upper(), [k.upper() for k in _HANDLERS], n=1)
    hint = f"did you mean {close[0]}?" if close else "see the Dockerfile reference for instructions"
    return DockerfileError(f"unknown instruction: {keyword.upper()}", hint=hint)


@dataclass(frozen=True)
class _Request:
    node: Node
    args: tuple[str, ...]
    location: Location

    @property
    def keyword(self) -> str:
        return self.node.keyword.upper()

    @property
    def original(self) -> str:
        return go_trim_space(self.node.original)

    def flags(self, accepted: Mapping[str, FlagKind]) -> Flags:
        return parse_flags(self.keyword, self.node.flags, accepted)


def _args(node: Node) -> tuple[str, ...]:
    # ONBUILD's arguments are its trigger's keyword followed by the trigger's arguments.
    if node.sub is None:
        return node.args
    return (*node.args, node.sub.keyword, *_args(node.sub))


def _at_least_one(req: _Request) -> None:
    if not req.args:
        raise DockerfileError(
            f"{req.keyword} requires at least one argument",
            hint=f"see the Dockerfile reference for {req.keyword}",
        )


def _exactly_one(req: _Request) -> str:
    if len(req.args) != 1:
        raise DockerfileError(f"{req.keyword} requires exactly one argument")
    return req.args[0]


def _from(req: _Request) -> From:
    args = req.args
    name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.fullmatch(name):
            raise DockerfileError(
                f'invalid name for build stage: "{args[2]}", '
                "name can't start with a number or contain symbols",
                hint="stage names are letters, digits, '-', '_' and '.', starting with a letter",
            )
    elif len(args) != 1:
        raise DockerfileError(
            "FROM requires either one or three arguments", hint="write FROM <image> [AS <name>]"
        )
    platform = req.flags({"platform": _S}).string("platform")
    return From(req.location, req.original, args[0], name, platform)


def _run(req: _Request) -> Run:
    flags = req.flags({"mount": _M, "network": _S, "security": _S})
    network, security = flags.string("network"), flags.string("security")
    if network is not None and network not in ("default", "none", "host"):
        raise DockerfileError(
            f'invalid network mode "{network}"', hint="use --network=default, none or host"
        )
    if security is not None and security not in ("sandbox", "insecure"):
        raise DockerfileError(
            f'security "{security}" is not valid', hint="use --security=sandbox or insecure"
        )
    heredocs = tuple(
        Heredoc(d.name, chomp_heredoc(d.content) if d.chomp else d.content, d.expand)
        for d in req.node.heredocs
    )
    return Run(
        location=req.location,
        original=req.original,
        command=req.args,
        shell_form=not req.node.json,
        mounts=flags.strings("mount"),
        network=network,
        security=security,
        heredocs=heredocs,
    )


def _need_destination(req: _Request) -> None:
    if len(req.args) < 2:
        raise DockerfileError(
            f"{req.keyword} requires at least two arguments, but only one was provided. "
            "Destination could not be determined",
            hint=f"write {req.keyword} <source>... <destination>",
        )


def _copy_parts(req: _Request) -> tuple[tuple[str, ...], str, tuple[Heredoc, ...]]:
    """Paths, destination and heredoc sources (bodies chomped for ``<<-``)."""
    *sources, dest = req.args
    if parse_heredoc_word(dest) is not None:
        raise DockerfileError(f"{req.keyword} cannot accept a heredoc as a destination")
    bodies = {doc.name: doc.content for doc in req.node.heredocs}
    paths: list[str] = []
    heredocs: list[Heredoc] = []
    for source in sources:
        marker = parse_heredoc_word(source)
        if marker is None:
            paths.append(source)
            continue
        content = bodies.get(marker.name, "")
        heredocs.append(
            Heredoc(marker.name, chomp_heredoc(content) if marker.chomp else content, marker.expand)
        )
    return tuple(paths), dest, tuple(heredocs)


_COPY_FLAGS = {"from": _S, "chown": _S, "chmod": _S, "link": _B, "parents": _B, "exclude": _M}
_ADD_FLAGS = {"chown": _S, "chmod": _S, "link": _B, "exclude": _M}
_ADD_FLAGS |= {"keep-git-dir": _B, "checksum": _S, "unpack": _B}


def _copy(req: _Request) -> Copy:
    _need_destination(req)
    flags = req.flags(_COPY_FLAGS)
    sources, dest, heredocs = _copy_parts(req)
    return Copy(
        location=req.location,
        original=req.original,
        sources=sources,
        dest=dest,
        from_=flags.string("from"),
        chown=flags.string("chown"),
        chmod=flags.string("chmod"),
        link=bool(flags.boolean("link")),
        parents=bool(flags.boolean("parents")),
        excludes=flags.strings("exclude"),
        heredocs=heredocs,
    )


def _add(req: _Request) -> Add:
    _need_destination(req)
    flags = req.flags(_ADD_FLAGS)
    sources, dest, heredocs = _copy_parts(req)
    return Add(
        location=req.location,
        original=req.original,
        sources=sources,
        dest=dest,
        from_=None,
        chown=flags.string("chown"),
        chmod=flags.string("chmod"),
        link=bool(flags.boolean("link")),
        parents=False,
        excludes=flags.strings("exclude"),
        heredocs=heredocs,
        checksum=flags.string("checksum"),
        keep_git_dir=bool(flags.boolean("keep-git-dir")),
        unpack=flags.boolean("unpack"),
    )


def _pairs(req: _Request) -> tuple[tuple[str, str], ...]:
    # The node holds (key, value, separator) triples; the separator only records the form.
    _at_least_one(req)
    args = req.args
    if len(args) % 3:
        raise DockerfileError(f"Bad input to {req.keyword}, too many arguments")
    pairs = tuple((args[i], args[i + 1]) for i in range(0, len(args), 3))
    if any(not key for key, _ in pairs):
        raise DockerfileError(f"{req.keyword} names can not be blank")
    return pairs


def _env(req: _Request) -> Env:
    req.flags({})
    return Env(req.location, req.original, _pairs(req))


def _label(req: _Request) -> Label:
    req.flags({})
    return Label(req.location, req.original, _pairs(req))


def _arg(req: _Request) -> Arg:
    _at_least_one(req)
    req.flags({})
    args: list[tuple[str, str | None]] = []
    for word in req.args:
        name, has_default, default = word.partition("=")
        if has_default and not name:
            raise DockerfileError("ARG names can not be blank", hint="write ARG name[=default]")
        args.append((name, default if has_default else None))
    return Arg(req.location, req.original, tuple(args))


def _cmd(req: _Request) -> Cmd:
    req.flags({})
    return Cmd(req.location, req.original, req.args, not req.node.json)


def _entrypoint(req: _Request) -> Entrypoint:
    req.flags({})
    return Entrypoint(req.location, req.original, req.args, not req.node.json)


def _shell(req: _Request) -> Shell:
    req.flags({})
    if not req.args:
        raise DockerfileError("SHELL requires at least one argument")
    if not req.node.json:
        raise DockerfileError(
            "SHELL requires the arguments to be in JSON form",
            hint='write SHELL ["/bin/sh", "-c"]',
        )
    return Shell(req.location, req.original, req.args)


def _simple(make: Callable[[Location, str, str], Instruction]) -> Callable[[_Request], Instruction]:
    def handler(req: _Request) -> Instruction:
        value = _exactly_one(req)
        req.flags({})
        return make(req.location, req.original, value)

    return handler


def _expose(req: _Request) -> Expose:
    _at_least_one(req)
    req.flags({})
    return Expose(req.location, req.original, req.args)


def _volume(req: _Request) -> Volume:
    _at_least_one(req)
    req.flags({})
    paths = tuple(go_trim_space(path) for path in req.args)
    if not all(paths):
        raise DockerfileError("VOLUME specified can not be an empty string")
    return Volume(req.location, req.original, paths)


_HEALTH_FLAGS = {
    "interval": _S,
    "timeout": _S,
    "start-period": _S,
    "start-interval": _S,
    "retries": _S,
}


def _healthcheck(req: _Request) -> Healthcheck:
    _at_least_one(req)
    flags = req.flags(_HEALTH_FLAGS)
    kind, rest = req.args[0].upper(), req.args[1:]
    if kind == "NONE":
        if rest:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(req.location, req.original, None, None, None, None, None, None)
    if kind != "CMD":
        raise DockerfileError(
            f'Unknown type "{kind}" in HEALTHCHECK (try CMD)', hint="write HEALTHCHECK CMD ..."
        )
    if not rest:
        raise DockerfileError(
            "Missing command after HEALTHCHECK CMD", hint="write HEALTHCHECK CMD <command>"
        )
    test = ("CMD", *rest) if req.node.json else ("CMD-SHELL", *rest)
    return Healthcheck(
        location=req.location,
        original=req.original,
        test=test,
        interval=_duration_flag(flags, "interval"),
        timeout=_duration_flag(flags, "timeout"),
        start_period=_duration_flag(flags, "start-period"),
        start_interval=_duration_flag(flags, "start-interval"),
        retries=_retries_flag(flags),
    )


def _duration_flag(flags: Flags, name: str) -> str | None:
    """A HEALTHCHECK duration: a Go duration, 0, or at least 1ms (BuildKit's rule)."""
    value = flags.string(name)
    if not value:
        return value
    try:
        ns = parse_duration_ns(value)
    except ValueError as err:
        hint = f"write --{name}=30s (units: ns us ms s m h)"
        raise DockerfileError(str(err), hint=hint) from None
    if ns != 0 and ns < 10**6:
        raise DockerfileError(f'Interval "{name}" cannot be less than 1ms')
    return value


def _retries_flag(flags: Flags) -> str | None:
    value = flags.string("retries")
    if not value:
        return value
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", value) or not -(2**31) <= int(value) < 2**31:
        raise DockerfileError(
            f'strconv.ParseInt: parsing "{value}": invalid syntax', hint="write --retries=3"
        )
    if int(value) < 0:
        raise DockerfileError(f"--retries cannot be negative ({int(value)})")
    return value


def _onbuild(req: _Request) -> Onbuild:
    _at_least_one(req)
    req.flags({})
    trigger = go_trim_space(req.args[0]).upper()
    if trigger == "ONBUILD":
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise DockerfileError(f"{trigger} isn't allowed as an ONBUILD trigger")
    text = _ONBUILD_PREFIX.sub("", req.node.original, count=1)
    # Keep heredoc bodies with the trigger so that it can be parsed again later.
    text += "".join("\n" + doc.content + doc.name for doc in req.node.heredocs)
    return Onbuild(req.location, req.original, text)


_HANDLERS: dict[str, Callable[[_Request], Instruction]] = {
    "add": _add,
    "arg": _arg,
    "cmd": _cmd,
    "copy": _copy,
    "entrypoint": _entrypoint,
    "env": _env,
    "expose": _expose,
    "from": _from,
    "healthcheck": _healthcheck,
    "label": _label,
    "maintainer": _simple(Maintainer),
    "onbuild": _onbuild,
    "run": _run,
    "shell": _shell,
    "stopsignal": _simple(StopSignal),
    "user": _simple(User),
    "volume": _volume,
    "workdir": _simple(Workdir),
}


def handled_instructions() -> frozenset[str]:
    """The keywords (lower case) this layer turns into instructions."""
    return frozenset(_HANDLERS)
