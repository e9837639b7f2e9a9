"""One function per ``pybuild`` subcommand; ``builder.cli.main`` parses and calls them."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from builder.cli.progress import human_size, make_progress, print_error, print_line
from builder.errors import BuildError, UsageError
from builder.images.names import normalize
from builder.images.store import Storage, default_root

if TYPE_CHECKING:
    from collections.abc import Sequence

    from builder.api import BuildRequest
    from builder.exporters.outputs import Output
    from cache.digest import Digest


@contextmanager
def _storage(args: argparse.Namespace) -> Iterator[Storage]:
    storage = Storage.open(args.root or default_root(), warn=print_line)
    try:
        yield storage
    finally:
        storage.close()


def _private_mounts() -> None:
    """Builds and runs mount overlays; keep every mount private to this process.

    As a non-root user, first enter a user namespace as its root (rootless mode)."""
    from runtime.rootfs import enter_private_mount_namespace
    from runtime.userns import enter_rootless

    enter_rootless()
    enter_private_mount_namespace()


def cmd_build(args: argparse.Namespace) -> int:
    from builder.cli.build_flags import check_platform, stdin_inputs

    check_platform(args.platform)
    if args.progress == "quiet":
        args.quiet = True
    with stdin_inputs(args.context, args.file) as inputs:
        return _build(args, inputs.context, inputs.dockerfile_text)


def _jobs(jobs: int) -> int:
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: expected at least 1", hint="e.g. --jobs 2")
    return jobs


def _build(args: argparse.Namespace, context: Path, dockerfile_text: str | None) -> int:
    from builder.api import BuildRequest, git_source_date_epoch, parse_build_args, run_build
    from builder.cli.build_flags import (
        STDIN,
        check_network,
        parse_annotations,
        parse_pairs,
        write_iidfile,
    )
    from builder.cli.interrupt import cancel_on_signals
    from builder.exporters.cache_transfer import parse_cache_specs
    from builder.exporters.metadata import write_metadata
    from builder.exporters.outputs import parse_output
    from builder.images.namedcontexts import parse_build_contexts
    from builder.ops.runsettings import parse_run_settings
    from builder.ops.secrets import build_secrets, store_tag, sweep_dead_secrets
    from builder.plan.planner import source_date_epoch
    from builder.run.container_spec import parse_resources
    from builder.solve import SolveOptions
    from cache.gc import clean_dead_tmp
    from cache.layers import Compression
    from runtime.sandboxes import Sandboxes

    if not context.is_dir():
        raise UsageError(
            f"build context {args.context!r} is not a directory",
            hint="pass the directory holding your Dockerfile and sources",
        )
    tags = tuple(normalize(t) for t in args.tag)
    build_args = parse_build_args(args.build_arg)
    file = args.file if args.file != STDIN else None
    dockerfile = (context / file if args.context == STDIN else Path(file)) if file else None
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
    request = BuildRequest(
        context=context,
        dockerfile=dockerfile,
        tags=tags,
        build_args=build_args,
        target=args.target,
        network=check_network(args.network),
        outputs=tuple(parse_output(o) for o in args.output),
        cache_from=parse_cache_specs(args.cache_from, "--cache-from"),
        cache_to=parse_cache_specs(args.cache_to, "--cache-to"),
        secrets=build_secrets(args.secret, args.ssh, args.allow),
        resources=parse_resources(args.memory, args.pids_limit, args.cpus),
        solve=SolveOptions(
            no_cache=args.no_cache,
            compression=Compression(args.compression),
            source_date_epoch=epoch,
            jobs=_jobs(args.jobs),
            no_cache_stages=frozenset(n.lower() for n in args.no_cache_filter),
        ),
        labels=parse_pairs(args.label, "--label"),
        annotations=parse_annotations(args.annotation),
        run_settings=parse_run_settings(args.add_host, args.shm_size, args.ulimit),
        contexts=tuple(parse_build_contexts(args.build_context).values()),
        dockerfile_text=dockerfile_text,
    )
    from builder.cli.registry_commands import push_plan

    pushes = push_plan(args.push, request.outputs, tags)
    check_stdout_outputs(request.outputs, args.quiet)
    _private_mounts()
    progress = make_progress(args.progress, quiet=args.quiet)
    sandboxes, stop = Sandboxes(), threading.Event()
    with cancel_on_signals(sandboxes, stop), _storage(args) as storage:
        from builder.cli.registry_commands import enable_pull

        enable_pull(storage, args)
        storage.blobs.clean_tmp()
        clean_dead_tmp(storage.blobs)  # what builds killed mid-step left
        sweep_dead_secrets(store_tag(storage.root))  # and their secrets on /dev/shm
        try:
            outcome = run_build(request, storage, progress, sandboxes, stop=stop)
        finally:
            progress.close()
        _stream_outputs(storage, request, outcome.image.digest)
        if args.metadata_file:
            write_metadata(args.metadata_file, outcome)
        if pushes:  # --push and -o type=registry
            from builder.cli.registry_commands import push_tags

            push_tags(storage, args, outcome.image, pushes)
    image_id = str(outcome.image.config_digest)  # docker's image ID: the config digest
    if args.iidfile:
        write_iidfile(args.iidfile, image_id)
    if args.explain:
        from builder.cli.progress import print_explain

        print_explain(outcome.steps, args.progress)
    if args.quiet:
        print_line(image_id, err=False)
        return 0
    print_line(outcome.summary())
    print_line(f"image {image_id}" + (f" tagged {', '.join(tags)}" if tags else ""))
    return 0


def _stream_outputs(storage: Storage, request: BuildRequest, image: Digest) -> None:
    """``-o -`` and ``dest=-``: after the build, so no progress line is mixed in."""
    from builder.exporters.outputs import write_output
    from cache.gc import build_guard

    with build_guard(storage.root):
        for output in request.outputs:
            if output.to_stdout:
                write_output(storage, output, image, request.tags, sys.stdout.buffer)


def _declared_epoch(context: Path, dockerfile: Path | None, text: str | None) -> str | None:
    """The value a global ``ARG SOURCE_DATE_EPOCH=<n>`` gives, read before the build
    (None when not declared, or when the Dockerfile does not parse: the build reports
    that, its warnings first)."""
    from builder.api import find_dockerfile, parse_dockerfile_at
    from builder.frontend.dockerfile import parse_dockerfile
    from builder.plan.planner import declared_epoch

    with contextlib.suppress(BuildError):
        if text is not None:
            return declared_epoch(parse_dockerfile(text, "Dockerfile (stdin)"))
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


def cmd_run(args: argparse.Namespace) -> int:
    from builder.run.container_spec import (
        RunRequest,
        parse_resources,
        parse_security_opts,
        run_image,
    )

    request = RunRequest(
        image=args.image,
        command=tuple(args.command),
        env=tuple(args.env),
        workdir=args.workdir,
        user=args.user,
        entrypoint=args.entrypoint,
        network=args.network,
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
    _private_mounts()
    if args.detach or args.runtime == "runc":
        from builder.run.containers import run_other_ways

        return run_other_ways(args, request)
    with _storage(args) as storage:  # run_image keeps its layers from prune (a lease)
        result = run_image(storage, request)
    if result.error:
        print_error(result.error, None)
    return result.exit_code


def cmd_load(args: argparse.Namespace) -> int:
    from builder.images.load import load_archive

    if not args.input.is_file():
        raise UsageError(
            f"{args.input}: no such file", hint="pass an archive written by docker save"
        )
    from cache.gc import build_guard

    with _storage(args) as storage, build_guard(storage.root):  # blobs are untagged until the end
        loaded = load_archive(args.input, storage.blobs, storage.index)
    for image in loaded:
        print_line(
            f"Loaded image: {image.name}" if image.name else f"Loaded image ID: {image.digest}",
            err=False,
        )
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from builder.exporters.outputs import parse_compression
    from builder.images.save import write_docker_archive, write_oci_archive

    wanted = args.compression or ("gzip" if args.format == "oci" else "keep")
    compression = None if wanted == "keep" else parse_compression(wanted, "--compression")
    with _storage(args) as storage:
        refs = []
        for name in args.images:
            image = storage.get_image(name)
            refs.append((normalize(name) if not name.startswith("sha256:") else "", image.digest))
        writer = write_oci_archive if args.format == "oci" else write_docker_archive
        writer(storage.blobs, refs, args.output, compression=compression)
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    with _storage(args) as storage:
        rows = []
        for name, digest in storage.index.tags():
            image = storage.find_image(name)
            size = sum(layer.size for layer in image.manifest.layers) if image else 0
            created = image.config.created if image else ""
            image_id = image.config_digest.short if image else digest.short
            repo, _, tag = name.rpartition(":")
            rows.append((repo, tag, image_id, human_age(created), human_size(size)))
    header = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print_line(
            "   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(),
            err=False,
        )
    return 0


def human_age(created: str, now: datetime | None = None) -> str:
    """docker's CREATED column: "56 years ago", "2 weeks ago", "About an hour ago"."""
    if not created:
        return "N/A"
    try:
        when = datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return created
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 1:
        return "Less than a second ago"
    if seconds < 60:
        return "1 second ago" if seconds == 1 else f"{seconds} seconds ago"
    minutes, hours = seconds // 60, int(seconds / 3600 + 0.5)
    if minutes < 60:
        return "About a minute ago" if minutes == 1 else f"{minutes} minutes ago"
    if hours < 48:
        return "About an hour ago" if hours == 1 else f"{hours} hours ago"
    # go-units HumanDuration: days to 2 weeks, weeks to 2 months, months to 2 years.
    days = hours // 24
    for limit, size, unit in ((14, 1, "days"), (60, 7, "weeks"), (730, 30, "months")):
        if days < limit:
            return f"{days // size} {unit} ago"
    return f"{days // 365} years ago"


def cmd_tag(args: argparse.Namespace) -> int:
    with _storage(args) as storage:
        image = storage.get_image(args.source)
        storage.index.set_tag(normalize(args.target), image.digest)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    status = 0
    with _storage(args) as storage:
        for name in args.images:
            if storage.index.remove_tag(normalize(name)):
                print_line(f"Untagged: {normalize(name)}", err=False)
            else:
                print_line(f"error: no such image: {name}")
                status = 1
    return status


def cmd_inspect(args: argparse.Namespace) -> int:
    with _storage(args) as storage:
        image = storage.get_image(args.image)
        doc = {
            "Id": str(image.config_digest),  # docker's image ID
            "Digest": str(image.digest),  # the manifest digest
            "RepoTags": sorted(n for n, d in storage.index.tags() if d == image.digest),
            "Manifest": image.manifest.to_json(),
            "Config": image.config.to_json(),
            "Size": sum(layer.size for layer in image.manifest.layers),
        }
    json.dump([doc], sys.stdout, indent=4)
    sys.stdout.write("\n")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from builder.cli.cache_commands import cmd_cache as run_cache

    return run_cache(args)
