"""What each instruction does to a stage: one handler per instruction.

A handler takes the stage state before the instruction and returns the state after it,
the spec of the filesystem step to run (None for metadata-only instructions) and its history
text. Words are expanded here (``builder.frontend.expand``), with the ARG/ENV in scope, in exactly
the instructions BuildKit expands.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from builder.errors import BuildError
from builder.frontend import instructions as ins
from builder.frontend.expand import ShellLexer
from builder.frontend.signals import MAX_SIGNAL, parse_signal
from builder.plan.copy import handle_copy, stage_index
from builder.plan.handler_base import Outcome, PlanContext, expand_in, fail
from builder.plan.healthcheck import health_config, history_text
from builder.plan.mounts import parse_mount
from builder.plan.pathcheck import nul_problem
from builder.plan.specs import DEFAULT_HOSTNAME, MountSpec, RunSpec, WorkdirSpec
from builder.plan.state import StageState, proxy_env, run_env

_fail = fail
_expand = expand_in
__all__ = ["HANDLERS", "Outcome", "PlanContext", "apply"]


def _meta(state: StageState, created_by: str) -> Outcome:
    return Outcome(state, None, created_by, created_by)


def _go_quote_list(items: tuple[str, ...]) -> str:
    """How BuildKit prints a []string in history (Go's %q): ["a" "b"]."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


def _command(state: StageState, command: tuple[str, ...], shell_form: bool) -> tuple[str, ...]:
    if not shell_form:
        return command
    return (*state.shell(), command[0] if command else "")


def _run_heredocs(instr: ins.Run) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """BuildKit's heredoc RUN: a lone ``<<EOF`` runs its body (a file if it has a shebang);
    otherwise the shell gets the command line with every body after it, and handles them."""
    line = instr.command[0] if instr.command else ""
    first = instr.heredocs[0]
    if len(instr.heredocs) == 1 and line.strip().lstrip("<").lstrip("-").strip("'\"") == first.name:
        if first.content.startswith("#!"):
            path = f"/dev/pipes/{first.name}"
            return (path,), ((path, first.content),)
        return (first.content,), ()
    bodies = "".join(f"{h.content}{h.name}\n" for h in instr.heredocs)
    return (f"{line}\n{bodies}",), ()


def _mounts(state: StageState, instr: ins.Run, ctx: PlanContext) -> tuple[MountSpec, ...]:
    def stage_ref(ref: str) -> int:
        return stage_index(ref, ctx, instr)

    out = []
    for raw in instr.mounts:
        for field in raw.split(","):
            key, _, value = field.partition("=")
            at = value.find("$")
            if key.strip().lower() == "from" and at not in (-1, len(value) - 1):
                # BuildKit instructions/commands_runmount.go parseMount, before expansion
                raise _fail(
                    instr,
                    "'from' doesn't support variable expansion, define alias stage instead",
                    f"add `FROM {value} AS src` (with a global ARG) and use from=src",
                )
        try:
            out.append(parse_mount(_expand(raw, state, ctx, instr), stage_ref))
        except BuildError as exc:
            raise exc.located(instr.location.file, instr.location.line) from None
    return tuple(out)


def _run_network(instr: ins.Run, ctx: PlanContext) -> str:
    """RUN --network: default (the build's --network), none, or host, which needs the
    network.host entitlement as in BuildKit unless the build itself uses the host's."""
    network = ctx.network if instr.network in (None, "default") else instr.network
    if network not in ("default", "host", "none"):
        raise _fail(instr, f"RUN --network={instr.network}: expected default, none or host")
    if instr.network == "host" and ctx.network != "host" and not ctx.allow_network_host:
        raise _fail(
            instr,
            "RUN --network=host is not allowed: the step would share the host's network "
            "(its loopback services, its traffic)",
            "pass --allow network.host to pybuild build if you trust this Dockerfile",
        )
    return network


def handle_run(state: StageState, instr: ins.Run, ctx: PlanContext) -> Outcome:
    mounts = _mounts(state, instr, ctx)
    insecure = instr.security == "insecure"
    if insecure and not ctx.allow_insecure:
        raise _fail(
            instr,
            "RUN --security=insecure is not allowed: it runs the step without the sandbox's "
            "lock-down (all capabilities, no seccomp)",
            "pass --allow security.insecure to pybuild build if you trust this Dockerfile",
        )
    network = _run_network(instr, ctx)
    command: tuple[str, ...] = instr.command
    scripts: tuple[tuple[str, str], ...] = ()
    if instr.heredocs and instr.shell_form:
        command, scripts = _run_heredocs(instr)
    args = command if scripts else _command(state, command, instr.shell_form)
    proxies = proxy_env(ctx.build_args)
    key_env = tuple(sorted((k, v) for k, v in state.arg_values.items()))
    spec = RunSpec(
        args=args,
        env=run_env(state, proxies),
        key_env=tuple(sorted({**dict(key_env), **state.expansion_env()}.items())),
        user=state.config.user,
        cwd=state.config.working_dir or "/",
        network=network,
        text=" ".join(instr.command) if instr.shell_form else json.dumps(list(instr.command)),
        scripts=scripts,
        mounts=mounts,
        privileged=insecure,
        hostname=ctx.build_args.get("BUILDKIT_SANDBOX_HOSTNAME") or DEFAULT_HOSTNAME,
    )
    shown = " ".join(args)  # BuildKit joins the argv with spaces, exec form included
    arg_prefix = ""
    if shown_args := state.history_args():
        arg_prefix = f"|{len(shown_args)} " + " ".join(shown_args) + " "
    # No --mount/--network flags: BuildKit's history shows only ARGs and the command.
    created_by = f"RUN {arg_prefix}{shown} # buildkit"
    key_text = f"RUN {json.dumps([list(args), list(scripts)])} network={network}"
    if insecure:
        key_text += " security=insecure"
    if mounts:
        key_text += " " + " ".join(m.describe() for m in mounts)
    return Outcome(state, spec, created_by, key_text)


def handle_env(state: StageState, instr: ins.Env, ctx: PlanContext) -> Outcome:
    # Every value sees the environment from before the instruction (BuildKit expands the
    # whole command first, dockerfile2llb dispatch): ``ENV A=2 B=$A`` gives B the old A.
    values = [(key, _expand(raw, state, ctx, instr)) for key, raw in instr.pairs]
    state = state.with_env_values(values)
    return _meta(state, "ENV " + " ".join(f"{k}={v}" for k, v in values))


def handle_arg(state: StageState, instr: ins.Arg, ctx: PlanContext) -> Outcome:
    shown = []
    for name, default in instr.args:
        if name in ctx.build_args:
            value: str | None = ctx.build_args[name]
        elif default is not None:
            value = _expand(default, state, ctx, instr)
        else:
            value = ctx.meta_args.get(name)
        state = state.with_arg(name, value)
        shown.append(name if default is None else f"{name}={default}")
    return _meta(state, "ARG " + " ".join(shown))


def handle_workdir(state: StageState, instr: ins.Workdir, ctx: PlanContext) -> Outcome:
    path = _expand(instr.path, state, ctx, instr)
    if not path:
        raise _fail(instr, "WORKDIR needs a path")
    full = posixpath.normpath(posixpath.join(state.config.working_dir or "/", path))
    state = state.with_config(working_dir=full)
    if full == "/":  # BuildKit makes no mkdir, so no layer, for the root
        return _meta(state, f"WORKDIR {full}")
    spec = WorkdirSpec(full, state.config.user)
    return Outcome(state, spec, f"WORKDIR {full}", f"WORKDIR {full} user={state.config.user}")


def handle_user(state: StageState, instr: ins.User, ctx: PlanContext) -> Outcome:
    user = _expand(instr.user, state, ctx, instr)
    return _meta(state.with_config(user=user), f"USER {user}")


def handle_cmd(state: StageState, instr: ins.Cmd, ctx: PlanContext) -> Outcome:
    cmd = _command(state, instr.command, instr.shell_form)
    state = replace(state, cmd_set=True).with_config(cmd=cmd)
    return _meta(state, f"CMD {_go_quote_list(cmd)}")


def handle_entrypoint(state: StageState, instr: ins.Entrypoint, ctx: PlanContext) -> Outcome:
    entrypoint = _command(state, instr.command, instr.shell_form)
    changes: dict[str, Any] = {"entrypoint": entrypoint}
    if not state.cmd_set:
        changes["cmd"] = None  # a new ENTRYPOINT drops an inherited CMD (BuildKit)
    return _meta(state.with_config(**changes), f"ENTRYPOINT {_go_quote_list(entrypoint)}")


def handle_label(state: StageState, instr: ins.Label, ctx: PlanContext) -> Outcome:
    labels = dict(state.config.labels)
    shown = []
    for key, value in instr.pairs:
        k, v = _expand(key, state, ctx, instr), _expand(value, state, ctx, instr)
        labels[k] = v
        shown.append(f"{k}={v}")
    return _meta(
        state.with_config(labels=tuple(sorted(labels.items()))), "LABEL " + " ".join(shown)
    )


def _ports(spec: str, instr: ins.Instruction) -> list[str]:
    """``[ip:][hostport:]port[-end][/proto]`` as ``port/proto`` words (BuildKit
    dockerfile2llb/convert_expose.go parsePort: an IP or host port is accepted, with
    the ExposeInvalidFormat warning, and dropped)."""
    parts = spec.split(":")
    ip, host, container = ":".join(parts[:-2]), ":".join(parts[-2:-1]), parts[-1]
    port, _, proto = container.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise _fail(instr, f"invalid port: {spec!r}: invalid proto: {proto}")
    if ip:
        try:
            ipaddress.ip_address(ip[1:-1] if ip.startswith("[") else ip)
        except ValueError:
            raise _fail(instr, f"invalid IP address: {ip}") from None
    first, last = _port_range(port, spec, instr)
    if host:
        _port_range(host, spec, instr)
    return [f"{p}/{proto}" for p in range(first, last + 1)]


def _port_range(text: str, spec: str, instr: ins.Instruction) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        raise _fail(instr, f"EXPOSE {spec}: invalid port {text!r}") from None
    if not 0 <= first <= last <= 65535:
        raise _fail(instr, f"EXPOSE {spec}: invalid port range {text!r} (0-65535)")
    return first, last


def handle_expose(state: StageState, instr: ins.Expose, ctx: PlanContext) -> Outcome:
    # The written words sorted as text (instructions/parse.go parseExpose), each
    # expanded and split into words (ProcessWords: one variable can hold several
    # ports); the history is fmt's %v of the parsed list in that order, duplicates
    # kept (dockerfile2llb/convert_expose.go dispatchExpose, Dockerfile 1.19+; before,
    # ``EXPOSE map[...]``).
    lexer = ShellLexer(escape=ctx.escape)
    added: list[str] = []
    for raw in sorted(instr.ports):
        try:
            words = lexer.process(raw, state.expansion_env()).words
        except BuildError as exc:
            raise exc.located(instr.location.file, instr.location.line) from None
        for word in words:
            added += _ports(word, instr)
    ports = set(state.config.exposed_ports) | set(added)
    return _meta(
        state.with_config(exposed_ports=tuple(sorted(ports))),
        "EXPOSE [" + " ".join(added) + "]",
    )


def handle_volume(state: StageState, instr: ins.Volume, ctx: PlanContext) -> Outcome:
    volumes = set(state.config.volumes)
    expanded = []
    for raw in instr.paths:
        value = _expand(raw, state, ctx, instr)
        if not value:
            raise _fail(instr, "VOLUME specified can not be an empty string")
        volumes.add(value)
        expanded.append(value)
    # BuildKit: fmt's %v of the expanded []string, e.g. VOLUME [/a /b].
    shown = "VOLUME [" + " ".join(expanded) + "]"
    return _meta(state.with_config(volumes=tuple(sorted(volumes))), shown)


def handle_stopsignal(state: StageState, instr: ins.StopSignal, ctx: PlanContext) -> Outcome:
    signal = _expand(instr.signal, state, ctx, instr)
    if parse_signal(signal) is None:  # BuildKit dispatchStopSignal: signal.ParseSignal
        raise _fail(
            instr,
            f"invalid signal: {signal}",
            f"name a signal (SIGTERM, KILL, RTMIN+1) or give its number, 1 to {MAX_SIGNAL}",
        )
    return _meta(state.with_config(stop_signal=signal), f"STOPSIGNAL {signal}")


def handle_shell(state: StageState, instr: ins.Shell, ctx: PlanContext) -> Outcome:
    if not instr.shell:
        raise _fail(instr, "SHELL requires at least one argument")
    # BuildKit: fmt's %v of the []string, SHELL [/bin/sh -ec] (no quotes).
    shown = "SHELL [" + " ".join(instr.shell) + "]"
    return _meta(state.with_config(shell=instr.shell), shown)


def handle_maintainer(state: StageState, instr: ins.Maintainer, ctx: PlanContext) -> Outcome:
    # BuildKit sets the image's Author (not a label); MAINTAINER does not expand words.
    return _meta(replace(state, author=instr.name), f"MAINTAINER {instr.name}")


def handle_healthcheck(state: StageState, instr: ins.Healthcheck, ctx: PlanContext) -> Outcome:
    try:
        health = health_config(instr)
    except BuildError as exc:
        raise exc.located(instr.location.file, instr.location.line) from None
    return _meta(state.with_config(healthcheck=health), history_text(health))


def handle_onbuild(state: StageState, instr: ins.Onbuild, ctx: PlanContext) -> Outcome:
    # Stored as written (no expansion): the child build parses and expands it.
    # BuildKit commits no history entry for ONBUILD: "" tells the solver to write none.
    triggers = (*state.config.on_build, instr.trigger)
    return Outcome(state.with_config(on_build=triggers), None, "", f"ONBUILD {instr.trigger}")


def handle_unsupported(state: StageState, instr: ins.Instruction, ctx: PlanContext) -> Outcome:
    keyword = instr.original.split(None, 1)[0].upper() if instr.original else type(instr).__name__
    raise _fail(instr, f"{keyword} is not supported yet", "remove it from the Dockerfile for now")


Handler = Callable[[StageState, Any, PlanContext], Outcome]
HANDLERS: Mapping[type[ins.Instruction], Handler] = {
    ins.Run: handle_run,
    ins.Copy: handle_copy,
    ins.Add: handle_copy,
    ins.Env: handle_env,
    ins.Arg: handle_arg,
    ins.Workdir: handle_workdir,
    ins.User: handle_user,
    ins.Cmd: handle_cmd,
    ins.Entrypoint: handle_entrypoint,
    ins.Label: handle_label,
    ins.Expose: handle_expose,
    ins.Volume: handle_volume,
    ins.StopSignal: handle_stopsignal,
    ins.Shell: handle_shell,
    ins.Maintainer: handle_maintainer,
    ins.Healthcheck: handle_healthcheck,
    ins.Onbuild: handle_onbuild,
}


def apply(state: StageState, instr: ins.Instruction, ctx: PlanContext) -> Outcome:
    """Run the handler for ``instr``'s type; a BuildError it raises gets the line."""
    handler = HANDLERS.get(type(instr))
    if handler is None:
        return handle_unsupported(state, instr, ctx)
    try:
        outcome: Outcome = handler(state, instr, ctx)
    except BuildError as exc:
        raise exc.located(instr.location.file, instr.location.line) from None
    if problem := nul_problem(outcome.spec):
        keyword = type(instr).__name__.upper()
        raise _fail(
            instr,
            f"{keyword}: {problem} holds a NUL byte; paths, arguments and environment "
            "entries cannot",
            "remove the \\0 from the Dockerfile (or from the ARG or ENV value it came from)",
        )
    return outcome
