"""``pybuild pull|push|login|logout`` and the build's ``--pull``: flags and handlers.

``builder.cli.main``'s command table names ``add_<command>`` (the flags) and
``cmd_<command>`` (the handler) here; ``builder.cli.build`` adds
``add_build_registry_flags``. The registry machinery (httpx) is imported only when one
of them runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from builder.cli.platform_flag import add_platform_flag
from builder.errors import UsageError

if TYPE_CHECKING:
    from builder.exporters.outputs import PushCompression
    from builder.images.store import Storage
    from builder.registry.options import RemoteOptions


def _add_insecure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="allow plain HTTP (and unverified TLS) for this registry; loopback always may",
    )


def add_pull(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    add_platform_flag(p, "pull")
    _add_insecure(p)


def add_push(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="NAME[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    p.add_argument(
        "--compression",
        choices=("gzip", "zstd", "uncompressed"),
        default="gzip",
        help="layer compression on the registry (default: gzip, which every client pulls); "
        "with zstd, gzip layers stay gzip unless --force-compression",
    )
    p.add_argument(
        "--force-compression",
        action="store_true",
        help="convert every layer to --compression, also gzip ones under zstd",
    )
    _add_insecure(p)


def add_login(p: argparse.ArgumentParser) -> None:
    p.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="the password (prefer --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _add_insecure(p)


def add_logout(p: argparse.ArgumentParser) -> None:
    p.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")


def add_build_registry_flags(p: argparse.ArgumentParser) -> None:
    """``--pull`` and ``--insecure-registry`` for ``pybuild build``."""
    p.add_argument(
        "--pull",
        action="store_true",
        help="always look base images up in their registry (default: local store first)",
    )
    p.add_argument(
        "--push", action="store_true", help="push every -t name to its registry after the build"
    )
    _add_insecure(p)


def default_docker_config() -> Path:
    """``$DOCKER_CONFIG``, else ``~/.docker`` (where docker keeps config.json)."""
    if explicit := os.environ.get("DOCKER_CONFIG"):
        return Path(explicit)
    return Path.home() / ".docker"


def remote_options(args: argparse.Namespace) -> RemoteOptions:
    from builder.cli.platform_flag import platform_of
    from builder.registry.options import RemoteOptions
    from cache.distribution.options import RegistryOptions
    from cache.oci import host_platform

    insecure = tuple(getattr(args, "insecure_registry", []) or [])
    return RemoteOptions(
        registry=RegistryOptions(insecure_registries=insecure),
        docker_config=default_docker_config(),
        platform=platform_of(args) or host_platform(),
    )


def _open(args: argparse.Namespace) -> Storage:
    from builder.cli.progress import print_line
    from builder.images.store import Storage, default_root

    return Storage.open(args.root or default_root(), warn=print_line)


def cmd_pull(args: argparse.Namespace) -> int:
    from builder.cli.progress import print_line
    from builder.registry.pull import pull_image

    storage = _open(args)
    try:
        events = None if args.quiet else print_line
        result = pull_image(args.image, storage.blobs, storage.index, remote_options(args), events)
    finally:
        storage.close()
    shown = result.local_name or f"{result.reference.familiar_name}@{result.image.digest}"
    if args.quiet:
        print_line(shown, err=False)
    else:
        print_line(f"Status: pulled {shown} ({result.fetched} blobs downloaded)")
        print_line(str(result.reference), err=False)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from builder.cli.progress import print_line
    from builder.exporters.push import push_image
    from builder.images.names import normalize
    from cache.images import is_index

    storage = _open(args)
    try:
        image = storage.get_image(args.image)
        target = args.image if "@" in args.image else normalize(args.image)
        events = None if args.quiet else print_line
        options = remote_options(args)
        wire = push_compression(args.compression, args.force_compression)
        named = storage.find_digest(args.image)
        # A multi-platform image goes out whole: its index and every platform's image.
        index = named if named is not None and is_index(storage.blobs, named) else None
        result = push_image(
            target, image, storage.blobs, options, events, storage.index, wire, index=index
        )
    finally:
        storage.close()
    if args.quiet:
        print_line(str(result.digest), err=False)
    else:
        print_line(
            f"{result.reference.tag}: digest: {result.digest} size: {result.size}", err=False
        )
    return 0


def push_compression(name: str | None, force: bool = False) -> PushCompression:
    """``--compression``/``compression=`` for a push (None: gzip, BuildKit's default)."""
    from builder.exporters.outputs import PushCompression, parse_compression
    from cache.layers import Compression

    target = Compression.GZIP if name is None else parse_compression(name, "--compression")
    return PushCompression(target, force)


def cmd_login(args: argparse.Namespace) -> int:
    from builder.cli.progress import print_line
    from cache.distribution.auth import Credentials, store_credentials
    from cache.distribution.client import RegistryClient
    from cache.distribution.reference import Reference

    registry = _registry_name(args.server)
    username = args.username or _prompt("Username: ", secret=False)
    password = _password(args)
    options = remote_options(args)
    creds = Credentials(username, password)
    probe = Reference(registry, "library/login-check")
    with RegistryClient(probe, credentials=creds, options=options.registry, scope="") as client:
        client.ping()
    store_credentials(options.docker_config or default_docker_config(), registry, creds)
    print_line("Login Succeeded", err=False)
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from builder.cli.progress import print_line
    from cache.distribution.auth import erase_credentials

    registry = _registry_name(args.server)
    if erase_credentials(default_docker_config(), registry):
        print_line(f"Removing login credentials for {registry}", err=False)
    else:
        print_line(f"Not logged in to {registry}", err=False)
    return 0


def _registry_name(server: str) -> str:
    """``https://host:port/v1/`` or ``host:port`` -> the registry as References name it."""
    host = server.split("://", 1)[-1].split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io", "docker.io", ""):
        return "docker.io"
    return host


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        if args.password:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        return sys.stdin.read().rstrip("\r\n")
    return str(args.password) if args.password else _prompt("Password: ", secret=True)


def _prompt(label: str, *, secret: bool) -> str:
    if not sys.stdin.isatty():
        raise UsageError(
            f"{label.rstrip(': ').lower()} required and stdin is not a terminal",
            hint="pass -u USER and --password-stdin (or -p PASSWORD)",
        )
    if not secret:
        return input(label)
    import getpass  # here: only a password prompt needs it

    return getpass.getpass(label)
