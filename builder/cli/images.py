"""``pybuild load|save|images|tag|rmi|inspect``: the images in the local store."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from builder.cli.platform_flag import add_platform_flag, platform_of
from builder.cli.progress import human_size, print_line
from builder.cli.store import open_store
from builder.errors import UsageError
from builder.images.names import normalize
from builder.images.store import default_root


def add_load(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i",
        "--input",
        required=True,
        type=Path,
        metavar="FILE",
        help="archive written by `docker save`, `pybuild save` or skopeo",
    )


def add_save(p: argparse.ArgumentParser) -> None:
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
    add_platform_flag(p, "save")
    p.add_argument("images", nargs="+", metavar="IMAGE")


def add_tag(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SRC")
    p.add_argument("target", metavar="DST")


def add_rmi(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")


def add_inspect(p: argparse.ArgumentParser) -> None:
    add_platform_flag(p, "inspect")
    p.add_argument("image", metavar="CONTAINER|IMAGE")


def cmd_load(args: argparse.Namespace) -> int:
    from builder.images.load import load_archive

    if not args.input.is_file():
        raise UsageError(
            f"{args.input}: no such file", hint="pass an archive written by docker save"
        )
    from cache.gclock import build_guard

    with open_store(args) as storage, build_guard(storage.root):  # blobs are untagged until the end
        loaded = load_archive(args.input, storage.blobs, storage.index)
        for digest in dict.fromkeys(image.digest for image in loaded):
            storage.unpack_for_builds(digest)
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
    with open_store(args) as storage:
        refs = []
        for name in args.images:
            image = storage.get_image(name, platform_of(args))
            refs.append((normalize(name) if not name.startswith("sha256:") else "", image.digest))
        writer = write_oci_archive if args.format == "oci" else write_docker_archive
        writer(storage.blobs, refs, args.output, compression=compression)
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    with open_store(args) as storage:
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
    with open_store(args) as storage:
        image = storage.get_image(args.source)
        # A multi-platform index is tagged as a whole, not its host image.
        digest = storage.find_digest(args.source) or image.digest
        storage.index.set_tag(normalize(args.target), digest)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    status = 0
    with open_store(args) as storage:
        for name in args.images:
            if storage.index.remove_tag(normalize(name)):
                print_line(f"Untagged: {normalize(name)}", err=False)
            else:
                print_line(f"error: no such image: {name}")
                status = 1
    return status


def cmd_inspect(args: argparse.Namespace) -> int:
    """``pybuild inspect NAME``: a container's state and networks, else an image's
    manifest and config (docker looks for a container first too)."""
    from builder.cli.containers import container_inspect

    root: Path = args.root or default_root()
    found = container_inspect(root, args.image)
    if found is not None:
        json.dump([found], sys.stdout, indent=4)
        sys.stdout.write("\n")
        return 0
    with open_store(args) as storage:
        image = storage.get_image(args.image, platform_of(args))
        # A multi-platform index shows the host's (or --platform's) image, with its tags.
        named = {image.digest, storage.find_digest(args.image)}
        doc = {
            "Id": str(image.config_digest),  # docker's image ID
            "Digest": str(image.digest),  # the manifest digest
            "RepoTags": sorted(n for n, d in storage.index.tags() if d in named),
            "Manifest": image.manifest.to_json(),
            "Config": image.config.to_json(),
            "Size": sum(layer.size for layer in image.manifest.layers),
        }
    json.dump([doc], sys.stdout, indent=4)
    sys.stdout.write("\n")
    return 0
