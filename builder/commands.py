"""One function per ``pybuild`` subcommand; ``builder.cli`` parses and calls them."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from builder.errors import BuildError, UsageError
from builder.progress import human_size, make_progress, print_error, print_line
from builder.refs import normalize
from builder.storage import Storage, default_root


@contextmanager
def _storage(args: argparse.Namespace) -> Iterator[Storage]:
    storage = Storage.open(args.root or default_root())
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
    from builder.build import (
        BuildRequest,
        git_source_date_epoch,
        parse_build_args,
        run_build,
    )
    from builder.cache_transfer import parse_cache_specs
    from builder.metadata import write_metadata
    from builder.outputs import parse_output
    from builder.plan import source_date_epoch
    from builder.runimage import parse_resources
    from builder.secrets import build_secrets
    from builder.solve import SolveOptions
    from cache.gc import clean_dead_tmp
    from cache.layers import Compression
    from runtime import sandbox

    context = Path(args.context)
    if not context.is_dir():
        raise UsageError(
            f"build context {args.context!r} is not a directory",
            hint="pass the directory holding your Dockerfile and sources",
        )
    tags = tuple(normalize(t) for t in args.tag)
    build_args = parse_build_args(args.build_arg)
    declared = None
    if "SOURCE_DATE_EPOCH" not in dict(build_args):  # a global ARG may set it (BuildKit)
        from builder.build import find_dockerfile, parse_dockerfile_at
        from builder.plan import declared_epoch

        path = find_dockerfile(context, Path(args.file) if args.file else None)
        with contextlib.suppress(BuildError):  # the build reports it, warnings first
            declared = declared_epoch(parse_dockerfile_at(path))
    epoch = source_date_epoch(dict(build_args), args.source_date_epoch, declared)
    if epoch is None:
        epoch = git_source_date_epoch(context)  # reproducible by default in a git checkout
        if epoch is None and not args.quiet:
            print_line(
                "note: no SOURCE_DATE_EPOCH and the context is not a git work tree: image "
                "times and file mtimes are kept, so the image digest is not reproducible"
            )
    request = BuildRequest(
        context=context,
        dockerfile=Path(args.file) if args.file else None,
        tags=tags,
        build_args=build_args,
        target=args.target,
        network=args.network,
        outputs=tuple(parse_output(o) for o in args.output),
        cache_from=parse_cache_specs(args.cache_from, "--cache-from"),
        cache_to=parse_cache_specs(args.cache_to, "--cache-to"),
        secrets=build_secrets(args.secret, args.ssh, args.allow),
        resources=parse_resources(args.memory, args.pids_limit, args.cpus),
        solve=SolveOptions(
            no_cache=args.no_cache,
            compression=Compression(args.compression),
            source_date_epoch=epoch,
            jobs=max(1, args.jobs),
        ),
    )
    from builder.registry_commands import push_targets

    pushes = push_targets(args.push, request.outputs, tags)
    _private_mounts()
    progress = make_progress(args.progress, quiet=args.quiet)
    with _storage(args) as storage:
        from builder.registry_commands import enable_pull

        enable_pull(storage, args)
        storage.blobs.clean_tmp()
        clean_dead_tmp(storage.blobs)  # what builds killed mid-step left
        try:
            outcome = run_build(request, storage, progress, sandbox)
        finally:
            progress.close()
        if args.metadata_file:
            write_metadata(args.metadata_file, outcome)
        if pushes:  # --push and -o type=registry
            from builder.registry_commands import push_tags

            push_tags(storage, args, outcome.image, pushes)
    if args.explain:
        from builder.progress import print_explain

        print_explain(outcome.steps, args.progress)
    if args.quiet:
        print_line(str(outcome.image.digest), err=False)
        return 0
    print_line(outcome.summary())
    print_line(f"image {outcome.image.digest}" + (f" tagged {', '.join(tags)}" if tags else ""))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from builder.runimage import RunRequest, parse_resources, run_image

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
    )
    _private_mounts()
    if args.detach or args.runtime == "runc":
        from builder.containers import run_other_ways

        return run_other_ways(args, request)
    from cache.gc import build_guard

    with _storage(args) as storage, build_guard(storage.root):  # prune must not take its layers
        result = run_image(storage, request)
    if result.error:
        print_error(result.error, None)
    return result.exit_code


def cmd_load(args: argparse.Namespace) -> int:
    from builder.archive import load_archive

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
    from builder.export import write_docker_archive, write_oci_archive
    from builder.outputs import parse_compression

    compression = (
        None if args.compression is None else parse_compression(args.compression, "--compression")
    )
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
            repo, _, tag = name.rpartition(":")
            rows.append((repo, tag, digest.short, _age(created), human_size(size)))
    header = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print_line(
            "   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(),
            err=False,
        )
    return 0


def _age(created: str) -> str:
    if not created:
        return "N/A"
    try:
        when = datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return created
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} seconds ago"


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
            "Id": str(image.digest),
            "Digest": str(image.digest),
            "RepoTags": sorted(n for n, d in storage.index.tags() if d == image.digest),
            "Manifest": image.manifest.to_json(),
            "Config": image.config.to_json(),
            "Size": sum(layer.size for layer in image.manifest.layers),
        }
    json.dump([doc], sys.stdout, indent=4)
    sys.stdout.write("\n")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from builder.cache_commands import cmd_cache as run_cache

    return run_cache(args)
