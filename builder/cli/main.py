"""The ``pybuild`` command: argument parsing, and the one place errors become exit codes.

Subcommands import their machinery lazily so ``pybuild --help`` stays instant.
``pybuild [build flags] CONTEXT`` is shorthand for ``pybuild build [build flags] CONTEXT``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import BuildError, UsageError


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, and ``module:function`` strings for its handler
    and for the function adding its flags to its parser (none: no flags). Modules are
    imported only for the command that runs, so ``pybuild --help`` stays fast."""

    help: str
    handler: str
    flags: str | None = None


_IMAGES = "builder.cli.images"
_RUN = "builder.cli.run"
_CONTAINERS = "builder.cli.containers"
_REGISTRY = "builder.cli.registry_commands"
# In the order --help lists them.
COMMANDS: dict[str, Command] = {
    "build": Command(
        "build an image from a Dockerfile and a context",
        "builder.cli.build:cmd_build",
        "builder.cli.build:add_build",
    ),
    "run": Command(
        "run a command in a new container from an image", f"{_RUN}:cmd_run", f"{_RUN}:add_run"
    ),
    "load": Command(
        "load images from a docker-archive or OCI archive",
        f"{_IMAGES}:cmd_load",
        f"{_IMAGES}:add_load",
    ),
    "save": Command("write images to an archive", f"{_IMAGES}:cmd_save", f"{_IMAGES}:add_save"),
    "images": Command("list images in the local store", f"{_IMAGES}:cmd_images"),
    "tag": Command("give an image another name", f"{_IMAGES}:cmd_tag", f"{_IMAGES}:add_tag"),
    "rmi": Command(
        "remove image names from the local store", f"{_IMAGES}:cmd_rmi", f"{_IMAGES}:add_rmi"
    ),
    "inspect": Command(
        "show a container's state and networks, or an image's manifest and config, as JSON",
        f"{_IMAGES}:cmd_inspect",
        f"{_IMAGES}:add_inspect",
    ),
    "ps": Command(
        "list containers (running; -a: all)", f"{_CONTAINERS}:cmd_ps", f"{_CONTAINERS}:add_ps"
    ),
    "logs": Command(
        "show a container's output", f"{_CONTAINERS}:cmd_logs", f"{_CONTAINERS}:add_logs"
    ),
    "stop": Command(
        "stop containers: STOPSIGNAL, then SIGKILL",
        f"{_CONTAINERS}:cmd_stop",
        f"{_CONTAINERS}:add_stop",
    ),
    "port": Command(
        "show where a container's published ports are on the host",
        f"{_CONTAINERS}:cmd_port",
        f"{_CONTAINERS}:add_port",
    ),
    "rm": Command("remove stopped containers", f"{_CONTAINERS}:cmd_rm", f"{_CONTAINERS}:add_rm"),
    "bundle": Command(
        "write an OCI runtime bundle (config.json, rootfs/)",
        f"{_CONTAINERS}:cmd_bundle",
        f"{_CONTAINERS}:add_bundle",
    ),
    "network": Command(
        "manage user-defined networks (create, ls, rm, inspect)",
        "builder.cli.networks:cmd_network",
        "builder.cli.networks:add_network",
    ),
    "cache": Command(
        "measure, prune and verify the build cache",
        "builder.cli.cache_commands:cmd_cache",
        "builder.cli.cache_commands:add_cache",
    ),
    "pull": Command(
        "pull an image from a registry into the local store",
        f"{_REGISTRY}:cmd_pull",
        f"{_REGISTRY}:add_pull",
    ),
    "push": Command(
        "push an image from the local store to a registry",
        f"{_REGISTRY}:cmd_push",
        f"{_REGISTRY}:add_push",
    ),
    "serve": Command(
        "serve the Docker Engine API (build, images, containers) on a unix socket",
        "builder.cli.serve:cmd_serve",
        "builder.cli.serve:add_serve",
    ),
    "warm": Command(
        "keep a warm builder for the store: builds on it skip start-up and imports",
        "builder.cli.warm_server:cmd_warm",
        "builder.cli.warm_server:add_warm",
    ),
    "login": Command(
        "log in to a registry (saved in docker's config.json)",
        f"{_REGISTRY}:cmd_login",
        f"{_REGISTRY}:add_login",
    ),
    "logout": Command(
        "forget the credentials for a registry",
        f"{_REGISTRY}:cmd_logout",
        f"{_REGISTRY}:add_logout",
    ),
}
EXIT_RUN_FAILURE = 125  # docker's code when the container could not be started
EXIT_INTERNAL_ERROR = 70  # sysexits.h EX_SOFTWARE: a bug in pybuild, not in the input


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``command``'s words: that command alone, with its flags. Without a
    known ``command`` (``--help``, a mistyped word): every command, with its help line.

    A build does not pay for the parsers of the other commands (argparse makes each
    one eagerly)."""
    parser = argparse.ArgumentParser(
        prog="pybuild",
        description="A daemonless container image builder. `pybuild [build flags] CONTEXT` "
        "is short for `pybuild build [build flags] CONTEXT`.",
        epilog="The store lives in $PYBUILD_ROOT (default ~/.local/share/pybuild).",
    )
    parser.add_argument("--root", type=Path, help="store root (default: $PYBUILD_ROOT)")
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="show program's version number and exit"
    )
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    names = [command] if command in COMMANDS else list(COMMANDS)
    for name in names:
        spec = COMMANDS[name]
        p = sub.add_parser(name, help=spec.help)
        if name == command and spec.flags is not None:
            add_flags: Callable[[argparse.ArgumentParser], None] = _load(spec.flags)
            add_flags(p)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked (importlib.metadata costs a
    warm build tens of milliseconds)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(f"pybuild {_version()}\n")  # stdout, as argparse's own action
        parser.exit()


def _load(target: str) -> Any:
    """The object a ``module:function`` string names, its module imported now."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pybuild")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _with_shorthand(argv: Sequence[str]) -> list[str]:
    """Insert ``build`` when the first non-global word is not a command.

    A bare word that is neither a command nor an existing path (``pybuild imgaes``) is a
    UsageError suggesting the closest command, not a build of a missing directory."""
    args = list(argv)
    i = _command_index(args)
    if i < len(args) and args[i] not in COMMANDS and args[i] not in ("-h", "--help", "--version"):
        _check_not_a_typo(args[i])
        args.insert(i, "build")
    return args


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, as ``main`` reads it ("" for none: ``--help``,
    ``--version``); None for a mistyped one (``main`` reports it)."""
    try:
        words = _with_shorthand(argv)
    except UsageError:
        return None
    i = _command_index(words)
    return words[i] if i < len(words) else ""


def _command_index(args: Sequence[str]) -> int:
    """Where the command word is: after the global ``--root DIR`` options."""
    i = 0
    while i < len(args) and args[i] == "--root":
        i += 2
    return i


def _check_not_a_typo(word: str) -> None:
    """Raise UsageError when ``word`` reads as a mistyped command rather than a context."""
    import difflib

    if word.startswith("-") or "/" in word or word in (".", "..") or os.path.lexists(word):
        return
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    raise UsageError(
        f"unknown command {word!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
        hint=f"commands: {', '.join(COMMANDS)}; to build a directory named {word!r}, "
        f"create it or write ./{word}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    The backstop: an exception no handler expected is a bug in pybuild. It is shown as
    one line and a hint (the traceback only with ``PYBUILD_DEBUG=1``), exit code 70."""
    try:
        return _main(argv)
    except BrokenPipeError:  # `pybuild inspect x | head`: the reader left, not a bug
        return _reader_gone()
    except Exception as exc:  # the one place every unexpected error ends
        return _internal_error(exc)


def _reader_gone() -> int:
    """Exit as a tool killed by SIGPIPE would (128 + 13), quietly; stdout now points at
    /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13


def _internal_error(exc: Exception) -> int:
    if os.environ.get("PYBUILD_DEBUG") == "1":
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    message = str(exc).splitlines()[0] if str(exc) else "(no message)"
    sys.stderr.write(
        f"pybuild: internal error: {type(exc).__name__}: {message}\n"
        "hint: this is a bug in pybuild, not in your input: please report it with the "
        "command line and the output of the same command run with PYBUILD_DEBUG=1\n"
    )
    sys.stderr.flush()
    return EXIT_INTERNAL_ERROR


def _main(argv: Sequence[str] | None) -> int:
    try:
        words = _with_shorthand(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        from builder.cli.progress import print_error

        print_error(str(exc), exc.hint)
        return exc.exit_code
    i = _command_index(words)
    parser = make_parser(words[i] if i < len(words) else None)
    args = parser.parse_args(words)
    if not args.subcommand:
        parser.print_help()
        return 2
    handler: Callable[[argparse.Namespace], int] = _load(COMMANDS[args.subcommand].handler)
    return _guarded(handler, args)


def _guarded(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """The one place errors become messages and exit codes (no tracebacks for user errors)."""
    from builder.cli.progress import print_error
    from cache.errors import CacheError, disk_full_hint, is_disk_full
    from fstree.tree import short_path
    from runtime.errors import RuntimeFailure

    failure = EXIT_RUN_FAILURE if args.subcommand == "run" else None
    try:
        return handler(args)
    except UsageError as exc:
        print_error(str(exc), exc.hint)
        return failure or exc.exit_code
    except BuildError as exc:
        print_error(str(exc), exc.hint)
        return failure or exc.exit_code
    except (CacheError, RuntimeFailure) as exc:
        print_error(exc.message, exc.hint)
        return failure or 1
    except KeyboardInterrupt as exc:  # BuildInterrupted: SIGINT/SIGTERM cancelled a build
        print_error(str(exc) or "interrupted", getattr(exc, "hint", None))
        code: int = getattr(exc, "exit_code", 130)
        return code
    except OSError as exc:
        if not is_disk_full(exc):
            raise  # a bug: the traceback is what a report needs
        where = exc.filename or getattr(args, "root", None) or _default_root()
        print_error(f"{short_path(where)}: {exc.strerror}", disk_full_hint(short_path(where)))
        return failure or 1


def _default_root() -> str:
    from builder.images.store import default_root

    return str(default_root())


if __name__ == "__main__":
    sys.exit(main())
