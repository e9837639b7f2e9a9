"""``pybuild network create|ls|rm|inspect``: user-defined networks (as root and
rootless: a rootless network's holder owns a user namespace too, see ``runtime.netbridge``).

The records, the holders and membership are ``builder.run.usernets``'; these commands
read and change them. ``create`` starts the network's holder here, in the host's mount
namespace (no private mount namespace is entered), so it pins none of ours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from builder.cli.progress import print_line
from builder.errors import UsageError
from builder.images.store import default_root

if TYPE_CHECKING:
    from builder.run.usernets import Network


def add_network(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Manage user-defined networks: containers on one reach each other by name and "
        "--network-alias; containers on different ones cannot."
    )
    sub = p.add_subparsers(dest="network_command", metavar="SUBCOMMAND", required=True)
    create = sub.add_parser("create", help="create a network")
    create.add_argument(
        "--subnet", metavar="CIDR", help="its IPv4 subnet (default: a free /24 of 10.89.0.0/16)"
    )
    create.add_argument("name", metavar="NAME")
    sub.add_parser("ls", help="list networks")
    rm = sub.add_parser("rm", help="remove networks (none of their containers may run)")
    rm.add_argument("names", nargs="+", metavar="NAME")
    inspect = sub.add_parser("inspect", help="show networks and their containers as JSON")
    inspect.add_argument("names", nargs="+", metavar="NAME")


def _root(args: argparse.Namespace) -> Path:
    root: Path = args.root or default_root()
    return root


def cmd_network(args: argparse.Namespace) -> int:
    from builder.run import usernets

    root = _root(args)
    if args.network_command == "create":
        network = usernets.create(root, args.name, args.subnet)
        print_line(network.id, err=False)
    elif args.network_command == "ls":
        _list(usernets.every(root))
    elif args.network_command == "inspect":
        docs = [usernets.inspect_doc(usernets.find(root, name)) for name in args.names]
        print_line(json.dumps(docs, indent=4), err=False)
    else:
        return _remove(root, args.names)
    return 0


def _list(networks: list[Network]) -> None:
    from builder.run.usernets import live_members

    rows = [("NETWORK ID", "NAME", "DRIVER", "SUBNET", "CONTAINERS")]
    for n in networks:
        rows.append((n.id[:12], n.name, "bridge", n.subnet, str(len(live_members(n)))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print_line(
            "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), err=False
        )


def _remove(root: Path, names: list[str]) -> int:
    """Each network in turn; the first failure is raised after the others are tried."""
    from builder.run.usernets import remove

    failed: UsageError | None = None
    for name in names:
        try:
            remove(root, name)
        except UsageError as exc:
            failed = failed or exc
            continue
        print_line(name, err=False)
    if failed is not None:
        raise failed
    return 0
