"""``pybuild build``: its flags, and the one caller of ``builder.api.build`` in the CLI.

``cmd_build`` turns the flags into a ``BuildRequest`` (with the CLI's defaults: the
SOURCE_DATE_EPOCH of a git checkout, the registry settings of ``$DOCKER_CONFIG``), runs
the build with a progress view and prints its result.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from builder.cli.build_flags import add_ci_flags
from builder.cli.progress import make_progress, print_line
from builder.cli.registry_commands import add_build_registry_flags
from builder.cli.resource_flags import add_resource_flags
from builder.errors import BuildError, UsageError

if TYPE_CHECKING:
    from builder.api import BuildRequest
    from builder.exporters.cache_transfer import CacheSpec
    from builder.exporters.outputs import Output
    from builder.images.namedcontexts import NamedContext
    from builder.outcome import BuildOutcome
    from builder.solve import SolveOptions
    from runtime.spec import Resources


def add_build(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Build an image from a Dockerfile. The image always goes to "
        "the local store; -t names it there, -o also exports it."
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
        default="default",
        help="network for RUN steps: default (a private one with outbound access), host "
        "(the host's) or none",
    )
    p.add_argument(
        "--isolation",
        choices=("auto", "namespaces", "chroot"),
        default=None,
        help="how RUN steps are isolated: namespaces (the sandbox), or chroot (a copy of "
        "the root, for CI job containers; not isolated: PIDs, network, mounts, hostname; "
        "/proc and /sys only where the process may mount); default $PYBUILD_ISOLATION, "
        "else auto: namespaces where they are permitted, chroot (saying so) where they "
        "are refused",
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
        help="security.insecure: let RUN --security=insecure run privileged; network.host: "
        "let RUN --network=host use the host's network",
    )
    add_resource_flags(p, "each RUN step")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.isascii() and value.isdigit() else None


def cmd_build(args: argparse.Namespace) -> int:
    from builder.cli.build_flags import stdin_inputs

    if args.progress == "quiet":
        args.quiet = True
    with stdin_inputs(args.context, args.file) as inputs:
        return _build(args, inputs.context, inputs.dockerfile_text)


def _build(args: argparse.Namespace, context: Path, dockerfile_text: str | None) -> int:
    from builder.api import build

    if not context.is_dir():
        raise UsageError(
            f"build context {args.context!r} is not a directory",
            hint="pass the directory holding your Dockerfile and sources",
        )
    request = _request(args, context, dockerfile_text)
    check_stdout_outputs(request.outputs, args.quiet)
    progress = make_progress(args.progress, quiet=args.quiet)
    try:
        outcome = build(request, args.root, progress)
    finally:
        progress.close()
    _report(args, request, outcome)
    return 0


def _request(args: argparse.Namespace, context: Path, dockerfile_text: str | None) -> BuildRequest:
    """The flags as a request (UsageError on a bad value)."""
    from builder.api import BuildRequest
    from builder.cli.build_flags import STDIN, parse_annotations, parse_pairs, parse_platform_flag
    from builder.cli.registry_commands import remote_options
    from builder.images.names import normalize
    from builder.ops.runsettings import parse_run_settings
    from builder.ops.secrets import build_secrets

    tags = tuple(normalize(t) for t in args.tag)
    build_args = parse_build_args(args.build_arg)
    file = args.file if args.file != STDIN else None
    dockerfile = (context / file if args.context == STDIN else Path(file)) if file else None
    epoch = _epoch(args, context, dockerfile, dockerfile_text, build_args)
    return BuildRequest(
        context=context,
        dockerfile=dockerfile,
        tags=tags,
        build_args=build_args,
        target=args.target,
        network=args.network,
        outputs=_outputs(args.output),
        cache_from=_cache_specs(args.cache_from, "--cache-from"),
        cache_to=_cache_specs(args.cache_to, "--cache-to"),
        secrets=build_secrets(args.secret, args.ssh, args.allow),
        resources=_resources(args),
        solve=_solve_options(args, epoch),
        labels=parse_pairs(args.label, "--label"),
        annotations=parse_annotations(args.annotation),
        run_settings=parse_run_settings(args.add_host, args.shm_size, args.ulimit),
        contexts=_build_contexts(args.build_context),
        dockerfile_text=dockerfile_text,
        pull="always" if args.pull else "missing",
        push=args.push,
        remote=remote_options(args),
        metadata_file=args.metadata_file,
        isolation=args.isolation,
        platforms=parse_platform_flag(args.platform),
    )


# The parsers below are imported only when their flag is given: their modules (exporters,
# named contexts, container specs) are not needed by a build that does not use them.


def _outputs(values: Sequence[str]) -> tuple[Output, ...]:
    if not values:
        return ()
    from builder.exporters.outputs import parse_output

    return tuple(parse_output(o) for o in values)


def _cache_specs(values: Sequence[str], flag: str) -> tuple[CacheSpec, ...]:
    if not values:
        return ()
    from builder.exporters.cache_transfer import parse_cache_specs

    return parse_cache_specs(values, flag)


def _build_contexts(values: list[str]) -> tuple[NamedContext, ...]:
    if not values:
        return ()
    from builder.images.namedcontexts import parse_build_contexts

    return tuple(parse_build_contexts(values).values())


def _resources(args: argparse.Namespace) -> Resources:
    from runtime.spec import Resources

    if args.memory is None and args.pids_limit is None and args.cpus is None:
        return Resources()
    from builder.run.container_spec import parse_resources

    return parse_resources(args.memory, args.pids_limit, args.cpus)


def _epoch(
    args: argparse.Namespace,
    context: Path,
    dockerfile: Path | None,
    dockerfile_text: str | None,
    build_args: tuple[tuple[str, str], ...],
) -> int | None:
    """SOURCE_DATE_EPOCH: a build arg, --source-date-epoch or the environment, a global
    ``ARG``, else the git checkout's HEAD time; a note says when there is none."""
    from builder.cli.build_flags import STDIN
    from builder.plan.planner import source_date_epoch

    declared = None
    if "SOURCE_DATE_EPOCH" not in dict(build_args):  # a global ARG may set it (BuildKit)
        declared = _declared_epoch(context, dockerfile, dockerfile_text)
    epoch = source_date_epoch(dict(build_args), args.source_date_epoch, declared)
    if epoch is None and args.context != STDIN:
        epoch = git_source_date_epoch(context)  # reproducible by default in a git checkout
    if epoch is None and not args.quiet and args.progress != "rawjson":
        print_line(
            "note: no SOURCE_DATE_EPOCH and the context is not a git work tree: image "
            "times and file mtimes are kept, so the image digest is not reproducible"
        )
    return epoch


def _solve_options(args: argparse.Namespace, epoch: int | None) -> SolveOptions:
    from builder.solve import SolveOptions
    from cache.codecs import Compression

    return SolveOptions(
        no_cache=args.no_cache,
        compression=Compression(args.compression),
        source_date_epoch=epoch,
        jobs=_jobs(args.jobs),
        no_cache_stages=frozenset(n.lower() for n in args.no_cache_filter),
    )


def _jobs(jobs: int) -> int:
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: expected at least 1", hint="e.g. --jobs 2")
    return jobs


def _declared_epoch(context: Path, dockerfile: Path | None, text: str | None) -> str | None:
    """The value a global ``ARG SOURCE_DATE_EPOCH=<n>`` gives, read before the build
    (None when not declared, or when the Dockerfile does not parse: the build reports
    that, its warnings first)."""
    from builder.dockerfiles import STDIN_NAME, find_dockerfile, parse_dockerfile_at
    from builder.frontend.dockerfile import parse_dockerfile
    from builder.plan.planner import declared_epoch

    with contextlib.suppress(BuildError):
        if text is not None:
            return declared_epoch(parse_dockerfile(text, STDIN_NAME))
        return declared_epoch(parse_dockerfile_at(find_dockerfile(context, dockerfile)))
    return None


def check_stdout_outputs(outputs: Sequence[Output], quiet: bool) -> None:
    """At most one output to stdout, and not with -q (which prints there too)."""
    streamed = [o for o in outputs if o.to_stdout]
    if len(streamed) > 1:
        raise UsageError("only one -o can write to stdout (dest=-)")
    if streamed and quiet:
        raise UsageError(
            "-q prints the image ID on stdout, where -o writes its tar",
            hint="drop -q, or use --iidfile FILE for the image ID",
        )


def _report(args: argparse.Namespace, request: BuildRequest, outcome: BuildOutcome) -> None:
    """--iidfile, --explain, then the image ID (-q) or the summary."""
    from builder.cli.build_flags import write_iidfile

    image_id = str(outcome.image_id)  # docker's image ID (the config digest), or the index
    if args.iidfile:
        write_iidfile(args.iidfile, image_id)
    if args.explain:
        from builder.cli.progress import print_explain

        print_explain(outcome.steps, args.progress)
    if args.quiet:
        print_line(image_id, err=False)
        return
    tags = request.tags
    print_line(outcome.summary())
    kind = f"index of {len(outcome.images)} platforms" if outcome.index else "image"
    print_line(f"{kind} {image_id}" + (f" tagged {', '.join(tags)}" if tags else ""))


def parse_build_args(values: Mapping[str, str] | list[str]) -> tuple[tuple[str, str], ...]:
    """``K=V`` strings to pairs; ``K`` alone takes the value from our environment (docker)."""
    pairs: list[tuple[str, str]] = []
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise BuildError(f"--build-arg {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        pairs.append((key, value))
    return tuple(pairs)


def git_source_date_epoch(context: Path) -> int | None:
    """The HEAD commit time when ``context`` is in a git work tree with commits, else None.

    A fresh checkout gives every file a new mtime; the commit time is the same on every
    machine, so it makes a reproducible default for SOURCE_DATE_EPOCH.
    Git is started only when it may find a repository (``might_be_in_git``): a context
    outside any needs no process.
    """
    if not might_be_in_git(context):
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(context), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.strip()
    return int(text) if done.returncode == 0 and text.isdigit() else None


def might_be_in_git(context: Path) -> bool:
    """False only when git cannot find a repository for ``context``: ``$GIT_DIR`` is unset,
    and neither the directory (symlinks resolved, as git sees it) nor any directory above
    it has a ``.git`` entry or is itself a bare repository (``HEAD``, ``objects``,
    ``refs``), the places git's discovery looks at."""
    if "GIT_DIR" in os.environ:
        return True
    here = os.path.realpath(context)
    while True:
        if os.path.lexists(os.path.join(here, ".git")) or _is_bare_repository(here):
            return True
        parent = os.path.dirname(here)
        if parent == here:
            return False
        here = parent


def _is_bare_repository(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, "HEAD")) and all(
        os.path.isdir(os.path.join(directory, d)) for d in ("objects", "refs")
    )
