"""The ``pybuild`` command: argument parsing, and the one place errors become exit codes.

Subcommands import their machinery lazily so ``pybuild --help`` stays instant.
``pybuild [build flags] CONTEXT`` is shorthand for ``pybuild build [build flags] CONTEXT``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from builder.errors import BuildError, UsageError

COMMANDS: tuple[str, ...] = ("build", "load", "save", "images", "tag", "rmi", "inspect", "run")
COMMANDS += ("pull", "push", "login", "logout")  # in builder.cli.registry_commands
COMMANDS += ("cache",)
COMMANDS += ("ps", "logs", "stop", "rm", "bundle")  # in builder.run.containers
EXIT_RUN_FAILURE = 125  # docker's code when the container could not be started
EXIT_INTERNAL_ERROR = 70  # sysexits.h EX_SOFTWARE: a bug in pybuild, not in the input


def _add_build(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "build",
        help="build an image from a Dockerfile and a context",
        description="Build an image from a Dockerfile. The image always goes to "
        "the local store; -t names it there, -o also exports it.",
    )
    p.add_argument(
        "context", help="the build context directory; - reads a tar (or a Dockerfile) on stdin"
    )
    p.add_argument(
        "-t",
        "--tag",
        action="append",
        default=[],
        metavar="NAME[:TAG]",
        help="name the image (repeatable)",
    )
    p.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="the Dockerfile (default: CONTEXT/Dockerfile); - reads it from stdin",
    )
    p.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="K=V",
        help="set a build-time ARG (repeatable)",
    )
    p.add_argument("--target", metavar="STAGE", help="build up to this stage")
    p.add_argument(
        "--no-cache", action="store_true", help="execute every step; do not reuse the cache"
    )
    p.add_argument(
        "--network",
        choices=("default", "host", "none"),
        default="host",
        help="network for RUN steps (default: host, which is also what default means here)",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "tty", "plain", "quiet", "rawjson"),
        default="auto",
        help="progress output (default: auto); quiet is -q; rawjson: one JSON status "
        "object per line on stderr, as buildx",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the image ID (the config digest) on success",
    )
    p.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        metavar="SPEC",
        help="also export: type=oci,dest=FILE | type=docker,dest=FILE | "
        "type=local,dest=DIR | type=tar,dest=FILE (the root filesystem) | "
        "type=registry[,name=REF][,compression=C][,force-compression=true]; dest=- is "
        "stdout, and -o - is type=tar,dest=- (repeatable)",
    )
    p.add_argument(
        "--compression",
        choices=("zstd", "gzip"),
        default="zstd",
        help="layer compression in the store (default: zstd)",
    )
    p.add_argument(
        "--source-date-epoch",
        type=int,
        metavar="SECONDS",
        default=_env_int("SOURCE_DATE_EPOCH"),
        help="timestamp for image and clamped layer mtimes (default: $SOURCE_DATE_EPOCH)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 2,
        help="stages built at once (default: CPU count)",
    )
    p.add_argument(
        "--metadata-file",
        type=Path,
        metavar="FILE",
        help="write the build's result (digests, per-step cache results) as JSON",
    )
    from builder.cli.registry_commands import add_build_registry_flags

    add_build_registry_flags(p)
    p.add_argument(
        "--cache-to",
        action="append",
        default=[],
        metavar="SPEC",
        help="export the build cache: type=local,dest=DIR[,mode=min|max] | "
        "type=registry,ref=REF[,mode=min|max] (repeatable)",
    )
    p.add_argument(
        "--cache-from",
        action="append",
        default=[],
        metavar="SPEC",
        help="import a build cache: type=local,src=DIR | type=registry,ref=REF (repeatable)",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="after the build, show a table: per step, cached or not, why, and its time",
    )
    _add_secret_flags(p)
    from builder.cli.build_flags import add_ci_flags

    add_ci_flags(p)


def _add_secret_flags(p: argparse.ArgumentParser) -> None:
    """Build flags for RUN --mount=type=secret|ssh and RUN --security=insecure."""
    p.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="id=ID,src=FILE|env=VAR",
        help="a secret for RUN --mount=type=secret (repeatable; never stored in the image)",
    )
    p.add_argument(
        "--ssh",
        action="append",
        default=[],
        metavar="ID[=SOCKET]",
        help="an ssh-agent socket for RUN --mount=type=ssh (default: $SSH_AUTH_SOCK)",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="ENTITLEMENT",
        help="security.insecure: let RUN --security=insecure run privileged",
    )
    _add_resource_flags(p, "each RUN step")


def _add_resource_flags(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "-m", "--memory", metavar="BYTES", help=f"memory limit for {what} (e.g. 512m, 2g)"
    )
    p.add_argument("--pids-limit", type=int, metavar="N", help=f"most processes at once in {what}")
    p.add_argument("--cpus", type=float, metavar="N", help=f"CPU time for {what} (e.g. 1.5)")


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run a command in a new container from an image",
        description="Run an image in a namespace sandbox, as `docker run` does. "
        "The container's changes are discarded when it exits.",
    )
    p.add_argument(
        "--rm",
        action="store_true",
        help="remove the container on exit (a foreground one always is)",
    )
    p.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="set an environment variable (K alone takes our value)",
    )
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", help="user to run as")
    p.add_argument("--entrypoint", metavar="CMD", help="override the image's ENTRYPOINT")
    p.add_argument(
        "--network",
        choices=("host", "none"),
        default="host",
        help="host (default) or none (loopback only)",
    )
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="HOST|NAME:CTR[:ro]",
        help="bind-mount a host path, or a named volume kept in the store (repeatable)",
    )
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("--hostname", help="container hostname (default: the container id)")
    _add_resource_flags(p, "the container")
    _add_run_completeness_flags(p)
    p.add_argument("image", help="image name[:tag] or digest")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments (default: CMD)")


def _add_run_completeness_flags(p: argparse.ArgumentParser) -> None:
    """`pybuild run` flags of issue 5: mounts, files, detach and the runtime to use."""
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("--name", help="name the container (for ps, logs, stop, rm)")
    p.add_argument(
        "--tmpfs",
        action="append",
        default=[],
        metavar="PATH[:size=N,mode=M]",
        help="mount a fresh tmpfs (repeatable)",
    )
    p.add_argument("--read-only", action="store_true", help="mount the root read-only")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE", help="read K=V lines")
    p.add_argument(
        "--add-host", action="append", default=[], metavar="HOST:IP", help="add to /etc/hosts"
    )
    p.add_argument(
        "--init",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run an init as PID 1 that forwards signals and reaps zombies (default: off, "
        "the command is PID 1, as in docker run)",
    )
    p.add_argument(
        "--security-opt",
        action="append",
        default=[],
        metavar="no-new-privileges[:true|false]",
        help="no-new-privileges: setuid binaries gain nothing (default: off, as in docker)",
    )
    p.add_argument(
        "--runtime",
        choices=("pybuild", "runc"),
        default="pybuild",
        help="our own sandbox (default) or runc on an OCI bundle",
    )


def _add_container_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ps", help="list containers (running; -a: all)")
    p.add_argument("-a", "--all", action="store_true", help="also stopped containers")
    p = sub.add_parser("logs", help="show a container's output")
    p.add_argument("-f", "--follow", action="store_true", help="keep following the output")
    p.add_argument("container", metavar="ID|NAME")
    p = sub.add_parser("stop", help="stop containers: STOPSIGNAL, then SIGKILL")
    p.add_argument("-t", "--time", type=float, default=10, help="seconds before SIGKILL")
    p.add_argument("containers", nargs="+", metavar="ID|NAME")
    p = sub.add_parser("rm", help="remove stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    p.add_argument("containers", nargs="+", metavar="ID|NAME")
    p = sub.add_parser("bundle", help="write an OCI runtime bundle (config.json, rootfs/)")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command (default: CMD)")


def _add_image_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("load", help="load images from a docker-archive or OCI archive")
    p.add_argument(
        "-i",
        "--input",
        required=True,
        type=Path,
        metavar="FILE",
        help="archive written by `docker save`, `pybuild save` or skopeo",
    )
    p = sub.add_parser("save", help="write images to an archive")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="FILE")
    p.add_argument(
        "--format",
        choices=("oci", "docker"),
        default="docker",
        help="docker-archive (default, `docker load` reads it) or OCI archive",
    )
    p.add_argument(
        "--compression",
        choices=("gzip", "zstd", "uncompressed", "keep"),
        default=None,
        help="layer compression (default: gzip for OCI, as -o type=oci; for docker, zstd "
        "layers become gzip and others stay). keep: the stored layers as they are, so an "
        "OCI save -> load keeps the image digest. A converted image gets a new manifest "
        "digest in the archive",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    sub.add_parser("images", help="list images in the local store")
    p = sub.add_parser("tag", help="give an image another name")
    p.add_argument("source", metavar="SRC")
    p.add_argument("target", metavar="DST")
    p = sub.add_parser("rmi", help="remove image names from the local store")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p = sub.add_parser("inspect", help="show an image's manifest and config as JSON")
    p.add_argument("image", metavar="IMAGE")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pybuild",
        description="A daemonless container image builder. `pybuild [build flags] CONTEXT` "
        "is short for `pybuild build [build flags] CONTEXT`.",
        epilog="The store lives in $PYBUILD_ROOT (default ~/.local/share/pybuild).",
    )
    parser.add_argument("--root", type=Path, help="store root (default: $PYBUILD_ROOT)")
    parser.add_argument("--version", action="version", version=f"pybuild {_version()}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    _add_build(sub)
    _add_run(sub)
    _add_image_commands(sub)
    _add_container_commands(sub)
    from builder.cli.cache_commands import add_parser as add_cache_parser

    add_cache_parser(sub)
    from builder.cli.registry_commands import add_registry_commands

    add_registry_commands(sub)
    return parser


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.isascii() and value.isdigit() else None


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
    i = 0
    while i < len(args) and args[i] == "--root":
        i += 2
    if i < len(args) and args[i] not in COMMANDS and args[i] not in ("-h", "--help", "--version"):
        _check_not_a_typo(args[i])
        args.insert(i, "build")
    return args


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
    except Exception as exc:  # the one place every unexpected error ends
        return _internal_error(exc)


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
    parser = make_parser()
    try:
        words = _with_shorthand(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        from builder.cli.progress import print_error

        print_error(str(exc), exc.hint)
        return exc.exit_code
    args = parser.parse_args(words)
    if not args.subcommand:
        parser.print_help()
        return 2
    from builder.cli import commands, registry_commands

    module: ModuleType = commands
    if args.subcommand in registry_commands.REGISTRY_COMMANDS:
        module = registry_commands
    if args.subcommand in ("ps", "logs", "stop", "rm", "bundle"):
        from builder.run import containers as module
    handler: Callable[[argparse.Namespace], int] = getattr(module, f"cmd_{args.subcommand}")
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
