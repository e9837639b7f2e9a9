"""``pybuild serve``: the Docker Engine API subset on a unix socket (``builder.engine``)."""

from __future__ import annotations

import argparse

from builder.cli.foreground import log, stop_on_sigterm
from builder.images.store import default_root


def add_serve(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Serve the Docker Engine API subset the docker CLI, docker-py and docker-compose "
        "use to build and run, on a unix socket (DOCKER_HOST=unix://PATH). Whoever can "
        "open the socket can build and run containers as the user serving it."
    )
    p.add_argument(
        "-H",
        "--host",
        metavar="unix:///PATH",
        help="the socket (default: /run/pybuild.sock as root, else "
        "$XDG_RUNTIME_DIR/pybuild.sock); made mode 0600, owned by the serving user",
    )
    p.add_argument(
        "--group",
        metavar="GROUP",
        help="also let GROUP's members connect (socket mode 0660), as dockerd's docker group",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from builder.engine.server import default_socket, parse_host, serve
    from builder.engine.state import Engine
    from builder.images.store import Storage

    path = parse_host(args.host) if args.host else default_socket()
    root = args.root or default_root()
    Storage.open(root, warn=log).close()  # made (private) before the first request
    stop_on_sigterm()
    try:
        serve(Engine(root.resolve(), log), path, args.group)
    except KeyboardInterrupt:
        log("pybuild serve: stopped")
    return 0
