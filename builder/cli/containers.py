"""``pybuild ps|logs|stop|rm|port|bundle`` and ``inspect`` of a container: the containers
``run -d`` left, and OCI bundles.

The records and the monitor that keeps them are ``builder.run.containers``'; these
commands read and act on them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from builder.cli.progress import print_line
from builder.cli.store import open_store
from builder.errors import UsageError
from builder.images.store import default_root
from builder.run.containers import containers_dir, find, load, records, stop_container
from fstree.tree import remove_tree


def add_ps(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="also stopped containers")


def add_port(p: argparse.ArgumentParser) -> None:
    p.add_argument("container", metavar="ID|NAME")
    p.add_argument("port", nargs="?", metavar="PORT[/PROTO]", help="show this one only")


def add_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="keep following the output")
    p.add_argument("container", metavar="ID|NAME")


def add_stop(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=float, default=10, help="seconds before SIGKILL")
    p.add_argument("containers", nargs="+", metavar="ID|NAME")


def add_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    p.add_argument("containers", nargs="+", metavar="ID|NAME")


def add_bundle(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command (default: CMD)")


def _root(args: argparse.Namespace) -> Path:
    root: Path = args.root or default_root()
    return root


def cmd_ps(args: argparse.Namespace) -> int:
    """``pybuild ps [-a]``: running containers (every recorded one with ``-a``)."""
    from builder.run.ports import describe

    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NETWORKS", "NAMES")]
    for r in records(_root(args)):
        if r.status != "running" and not args.all:
            continue
        status = "Up" if r.status == "running" else r.status.capitalize()
        if r.status == "exited":
            status = f"Exited ({r.exit_code if r.exit_code is not None else '?'})"
        command = " ".join(r.command)
        command = command if len(command) <= 30 else command[:27] + "..."
        ports = ", ".join(describe(p) for p in r.ports) if r.status == "running" else ""
        network = r.network + (f" ({r.address})" if r.address and r.status == "running" else "")
        rows.append(
            (r.id[:12], r.image, f'"{command}"', r.created[:19], status, ports, network, r.name)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        text = "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        print_line(text.rstrip(), err=False)
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    """``pybuild port ID|NAME [PORT[/PROTO]]``: where its published ports are on the host."""
    from builder.run.ports import port_lines

    record = find(_root(args), args.container)
    lines = port_lines(record.ports, args.port)
    if args.port is not None and not lines:
        raise UsageError(
            f"no public port {args.port!r} published for {args.container}",
            hint="publish it with `pybuild run -p`; `pybuild port NAME` lists what is",
        )
    for line in lines:
        print_line(line, err=False)
    return 0


def container_inspect(root: Path, ref: str) -> dict[str, object] | None:
    """``inspect`` of a container, docker's main fields; None when no container is ``ref``
    (then ``inspect`` looks for an image)."""
    every = records(root)
    matches = [r for r in every if r.name == ref] or [r for r in every if r.id.startswith(ref)]
    if len(matches) != 1 or len(ref) < 1:
        return None
    r = matches[0]
    running = r.status == "running"
    ports: dict[str, list[dict[str, str]]] = {}
    for port in r.ports:
        ports.setdefault(f"{port.container_port}/{port.protocol}", []).append(
            {"HostIp": port.host_ip or "0.0.0.0", "HostPort": str(port.host_port)}
        )
    address = r.address if running else ""
    networks: dict[str, dict[str, object]] = {r.network: {"IPAddress": address}}
    if r.network_id:
        networks[r.network].update(
            NetworkID=r.network_id,
            Gateway=r.gateway if running else "",
            IPPrefixLen=r.prefix_len if running else 0,
            Aliases=list(r.aliases),
        )
    return {
        "Id": r.id,
        "Name": "/" + r.name,
        "Created": r.created,
        "Config": {"Image": r.image, "Cmd": list(r.command)},
        "State": {
            "Status": r.status,
            "Running": running,
            "Pid": r.init_pid if running else 0,
            "ExitCode": r.exit_code or 0,
            "Error": r.error,
        },
        "HostConfig": {"NetworkMode": r.network},
        "NetworkSettings": {
            "Ports": ports,
            "Networks": networks,
            "IPAddress": r.address if running else "",
        },
    }


def cmd_logs(args: argparse.Namespace) -> int:
    """``pybuild logs [-f] ID|NAME``: the container's output (following it with -f)."""
    root = _root(args)
    record = find(root, args.container)
    path = containers_dir(root) / record.id / "log"
    out = sys.stdout.buffer
    with contextlib.suppress(FileNotFoundError), path.open("rb") as log:
        while True:
            chunk = log.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            current = load(root, record.id)
            if not args.follow or current is None or current.status != "running":
                break
            time.sleep(0.1)
        out.write(log.read())
    out.flush()
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """``pybuild stop [-t SECS] ID|NAME``: STOPSIGNAL, then SIGKILL after the timeout."""
    root = _root(args)
    for ref in args.containers:
        record = find(root, ref)
        stop_container(root, record, args.time)
        print_line(ref, err=False)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """``pybuild rm [-f] ID|NAME...``: remove stopped containers (``-f``: kill first)."""
    root = _root(args)
    for ref in args.containers:
        record = find(root, ref)
        if record.status == "running":
            if not args.force:
                raise UsageError(
                    f"container {ref} is running",
                    hint=f"stop it first (`pybuild stop {ref}`) or use `pybuild rm -f`",
                )
            stop_container(root, record, 0)
        remove_tree(containers_dir(root) / record.id, ignore_errors=True)
        print_line(ref, err=False)
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    """``pybuild bundle IMAGE DIR``: an OCI runtime bundle, ``runc run`` ready."""
    from builder.run.container_spec import RunRequest, prepare, write_bundle_dir

    dest = Path(args.dir)
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"bundle directory {dest} is not empty", hint="give a new directory")
    with open_store(args) as storage:
        prepared = prepare(storage, RunRequest(args.image, tuple(args.command)))
        try:
            write_bundle_dir(storage, prepared, dest)
        finally:
            remove_tree(prepared.home, ignore_errors=True)
    return 0
