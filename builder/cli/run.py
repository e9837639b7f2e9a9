"""``pybuild run``: a container from an image, in the foreground, detached (``-d``) or
under runc (``--runtime runc``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from builder.cli.platform_flag import add_platform_flag, platform_of
from builder.cli.progress import print_error, print_line
from builder.cli.resource_flags import add_resource_flags
from builder.cli.store import open_store
from builder.errors import UsageError
from builder.images.store import default_root
from builder.process import enter_run_namespaces

if TYPE_CHECKING:
    from builder.run.container_spec import RunRequest
    from runtime.netbridge import Holder


def add_run(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run an image in a namespace sandbox, as `docker run` does. "
        "The container's changes are discarded when it exits."
    )
    add_platform_flag(p, "run")
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
        default="default",
        metavar="default|host|none|NAME",
        help="default: a private network with outbound access and no way to the host's "
        "loopback; host: the host's (no isolation); none: loopback only; NAME: that "
        "user network (`pybuild network create`) as well as the default one",
    )
    p.add_argument(
        "--network-alias",
        action="append",
        default=[],
        metavar="ALIAS",
        help="another name the container has on its user network (repeatable)",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:][HOST:]CTR[/PROTO]",
        help="publish a container port on the host (repeatable; no HOST: a free port, "
        "shown by `pybuild port`)",
    )
    p.add_argument(
        "-P",
        "--publish-all",
        action="store_true",
        help="publish every port the image EXPOSEs on a free host port",
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
    add_resource_flags(p, "the container")
    _add_run_completeness_flags(p)
    p.add_argument("image", help="image name[:tag] or digest")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments (default: CMD)")


def _add_run_completeness_flags(p: argparse.ArgumentParser) -> None:
    """`pybuild run` flags of issue 5: mounts, files, detach and the runtime to use."""
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("--name", help="name the container (for ps, logs, stop, rm)")
    # -d: also keep the output as docker's stdout/stderr frames (pybuild serve's attach)
    p.add_argument("--log-streams", action="store_true", help=argparse.SUPPRESS)
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


def cmd_run(args: argparse.Namespace) -> int:
    from builder.run.container_spec import (
        RunRequest,
        parse_resources,
        parse_security_opts,
        run_image,
    )

    request = RunRequest(
        image=args.image,
        platform=platform_of(args),
        command=tuple(args.command),
        env=tuple(args.env),
        workdir=args.workdir,
        user=args.user,
        entrypoint=args.entrypoint,
        network=args.network,
        network_aliases=tuple(args.network_alias),
        name=args.name,
        publish=tuple(args.publish),
        publish_all=args.publish_all,
        volumes=tuple(args.volume),
        interactive=args.interactive,
        tty=args.tty,
        hostname=args.hostname,
        resources=parse_resources(args.memory, args.pids_limit, args.cpus),
        tmpfs=tuple(args.tmpfs),
        read_only=args.read_only,
        env_files=tuple(Path(f) for f in args.env_file),
        add_hosts=tuple(args.add_host),
        init=args.init,
        no_new_privs=parse_security_opts(args.security_opt),
    )
    enter_run_namespaces(_user_network_ready(args))
    if args.detach or args.runtime == "runc":
        return _run_other_ways(args, request)
    with open_store(args) as storage:  # run_image keeps its layers from prune (a lease)
        result = run_image(storage, request)
    if result.error:
        print_error(result.error, None)
    return result.exit_code


def _user_network_ready(args: argparse.Namespace) -> Holder | None:
    """A user network's holder running, started here (before the private mount namespace,
    so it pins none of our mounts) if it is gone; flags that need a user network. The
    holder, for a user network."""
    from builder.run.usernets import check_alias, is_user_network, ready

    if not is_user_network(args.network):
        if args.network_alias:
            raise UsageError(
                "--network-alias needs a user network",
                hint="create one (`pybuild network create NAME`) and run with --network NAME",
            )
        return None
    if args.runtime == "runc":
        raise UsageError(
            "--runtime runc runs on the default, host or none network only",
            hint="drop --runtime runc to run on a user network",
        )
    for alias in args.network_alias:
        check_alias(alias)
    return ready(args.root or default_root(), args.network).holder


def _run_other_ways(args: argparse.Namespace, request: RunRequest) -> int:
    """``run -d`` (prints the container's id) and ``run --runtime runc``."""
    from builder.run.containers import records, run_with_runc, start_detached

    with open_store(args) as storage:
        if args.detach and (args.tty or args.interactive):
            raise UsageError(
                "-d with -i/-t is not supported: pybuild cannot attach to a container later",
                hint="drop -i/-t to run it in the background, or -d to run it here",
            )
        if args.name and any(r.name == args.name for r in records(storage.root)):
            raise UsageError(
                f"the container name {args.name!r} is already in use",
                hint=f"remove it with `pybuild rm {args.name}` or choose another --name",
            )
        if args.runtime == "runc" and args.detach:
            raise UsageError("--runtime runc runs in the foreground only (no -d)")
        if args.runtime == "runc":
            return run_with_runc(storage, request)
        container_id = start_detached(storage, request, args.name, args.rm, args.log_streams)
    print_line(container_id, err=False)
    return 0
