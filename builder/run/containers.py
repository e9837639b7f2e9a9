"""Detached containers (``run -d``), their records in the store, and ``--runtime runc``.

A detached container is run by a monitor process of ours (``python -m builder.run.containers
--monitor``), started in its own session so it outlives the CLI. The monitor keeps the
container's output in ``<store>/containers/<id>/log`` and its state in ``record.json``
(written atomically: temp file, rename), so ``ps``, ``logs``, ``stop`` and ``rm`` work from
any later pybuild process. Records of containers whose monitor died show as exited.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import UsageError
from builder.frontend.signals import parse_signal
from builder.run.ports import from_json
from fstree.tree import remove_tree

if TYPE_CHECKING:
    from builder.images.store import Storage
    from builder.run.container_spec import Prepared, RunRequest
    from builder.run.usernets import Endpoint
    from cache.leases import Lease
    from runtime.netns import PortForward

START_TIMEOUT = 20.0
SETTLE_TIME = 1.0
_REPO_PARENT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Record:
    """One container as ``pybuild ps`` shows it."""

    id: str
    name: str
    image: str
    command: tuple[str, ...]
    created: str
    status: str = "created"  # created | running | exited
    pid: int = 0  # the monitor's pid
    init_pid: int = 0  # the sandbox init's pid (the container's PID 1 is its child)
    exit_code: int | None = None
    error: str = ""
    stop_signal: str = "SIGTERM"
    remove: bool = False  # --rm: the monitor removes the container when it exits
    network: str = "default"  # default | host | none | a user network's name
    ports: tuple[PortForward, ...] = ()  # published (-p/-P), host ports chosen
    address: str = ""  # the container's IPv4 address on its network, once running
    aliases: tuple[str, ...] = ()  # --network-alias, on a user network
    gateway: str = ""  # on a user network, once running
    network_id: str = ""
    prefix_len: int = 0
    log_streams: bool = False  # also keep the output as docker frames (pybuild serve)


def containers_dir(root: Path) -> Path:
    return root / "containers"


def save(root: Path, record: Record) -> None:
    """Write ``record`` atomically."""
    path = containers_dir(root) / record.id / "record.json"
    tmp = path.with_name(f"record.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1), encoding="utf-8")
    os.replace(tmp, path)


def load(root: Path, container_id: str) -> Record | None:
    path = containers_dir(root) / container_id / "record.json"
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        body["command"] = tuple(body["command"])
        body["ports"] = from_json(body.get("ports", []))
        body["aliases"] = tuple(body.get("aliases", []))
        record = Record(**body)
    except (OSError, ValueError, TypeError):
        return None
    if record.status == "running" and not _alive(record.pid):
        record = replace(record, status="exited", error=record.error or "monitor died")
    return record


def records(root: Path) -> list[Record]:
    """Every recorded container, newest first."""
    found = []
    base = containers_dir(root)
    for entry in base.iterdir() if base.is_dir() else ():
        record = load(root, entry.name)
        if record is not None:
            found.append(record)
    return sorted(found, key=lambda r: r.created, reverse=True)


def find(root: Path, ref: str) -> Record:
    """The container named ``ref``, or with ``ref`` as its id or a unique id prefix."""
    every = records(root)
    matches = [r for r in every if r.name == ref] or [r for r in every if r.id.startswith(ref)]
    if len(matches) != 1 or not ref:
        what = "is ambiguous" if len(matches) > 1 else "does not exist"
        raise UsageError(f"container {ref!r} {what}", hint="`pybuild ps -a` lists containers")
    return matches[0]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_with_runc(storage: Storage, request: RunRequest) -> int:
    """``run --runtime runc``: the container in the foreground; its exit code."""
    from builder.run.container_spec import prepare_leased, run_runc

    # The lease keeps the image's layers from prune while the container runs.
    prepared, lease = prepare_leased(storage, request)
    with lease:
        return run_runc(storage, prepared)


def start_detached(
    storage: Storage,
    request: RunRequest,
    name: str | None,
    remove: bool,
    log_streams: bool = False,
) -> str:
    """``run -d``: start the container under a monitor of ours; its id once it runs.

    ``name`` defaults to the id's first 12 characters; with ``remove`` (``--rm``) the
    monitor removes the container when it exits; with ``log_streams`` it also keeps the
    output as docker's multiplexed frames (``builder.run.logpump``). UsageError when it
    fails to start.
    """
    from builder.run.container_spec import prepare_leased

    # The lease keeps the image's layers from prune for the container's whole life
    # (the monitor inherits it); prune does not wait for the container.
    prepared, lease = prepare_leased(storage, request)
    record = Record(
        id=prepared.container_id,
        name=name or prepared.container_id[:12],
        image=request.image,
        command=prepared.spec.args,
        created=_now(),
        stop_signal=prepared.stop_signal,
        remove=remove,
        log_streams=log_streams,
        network=request.network,
        ports=prepared.ports,
        aliases=request.network_aliases,
    )
    try:
        return _detach(storage.root, prepared, record, lease)
    finally:
        lease.release()  # a no-op once handed to the monitor


def _detach(root: Path, prepared: Prepared, record: Record, lease: Lease) -> str:
    from runtime.spec import spec_to_json

    (prepared.home / "spec.json").write_text(spec_to_json(prepared.spec), encoding="utf-8")
    save(root, record)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([_REPO_PARENT, os.environ.get("PYTHONPATH", "")]),
    }
    assert lease.fd is not None
    subprocess.Popen(
        [
            sys.executable,
            "-m",
            "builder.run.containers",
            "--monitor",
            str(root),
            record.id,
            str(lease.fd),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # survives the CLI and its terminal
        pass_fds=(lease.fd,),  # the monitor holds the lease from here on
        env=env,
    )
    lease.hand_off()
    deadline = time.monotonic() + START_TIMEOUT
    current = load(root, record.id)
    while current is not None and current.status == "created" and time.monotonic() < deadline:
        time.sleep(0.05)
        current = load(root, record.id)
    settle = time.monotonic() + SETTLE_TIME  # set-up failures (e.g. unknown user) come fast
    while current is not None and current.status == "running" and time.monotonic() < settle:
        time.sleep(0.05)
        current = load(root, record.id)
    if current is not None and current.status == "exited" and current.exit_code == 125:
        raise UsageError(f"the container did not start: {current.error}")
    return record.id


def _monitor(root: Path, container_id: str, lease_fd: int) -> int:
    """Run the detached container; keep its log and record its state to the end."""
    from cache.leases import adopt_lease

    lease = adopt_lease(root, container_id, lease_fd)
    record = load(root, container_id)
    if record is None:
        lease.release()
        return 125
    home = containers_dir(root) / container_id
    with lease:  # for the container's whole life: prune keeps its layers
        record = _supervise(root, home, record)
    if record.remove:
        remove_tree(home, ignore_errors=True)
    else:
        save(root, record)
        for scratch in ("upper", "work"):
            if record.exit_code == 125:
                remove_tree(home / scratch, ignore_errors=True)
    return 0


def _supervise(root: Path, home: Path, record: Record) -> Record:
    """Start the container from its saved spec, record it running, wait; the final record."""
    from builder.run.logpump import LogPump
    from builder.run.network import address_of, attached
    from runtime import sandbox
    from runtime.errors import RuntimeFailure
    from runtime.mountns import enter_private_mount_namespace
    from runtime.spec import spec_from_json

    try:
        enter_private_mount_namespace()
        spec = spec_from_json((home / "spec.json").read_text(encoding="utf-8"))
        with attached(spec, home, record.ports, _endpoint(root, record)) as joined:
            pump = LogPump(home) if record.log_streams else None
            log = os.open(home / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            out, err = (pump.stdout_w, pump.stderr_w) if pump is not None else (log, log)
            null = os.open(os.devnull, os.O_RDONLY)
            box = sandbox.start(joined, stdin=null, stdout=out, stderr=err, own_process_group=True)
            os.close(log)
            os.close(null)
            if pump is not None:
                pump.start()
            record = replace(
                record,
                status="running",
                pid=os.getpid(),
                init_pid=box.pid,
                address=address_of(joined),
            )
            record = _on_user_network(root, record)
            save(root, record)
            signal.signal(signal.SIGTERM, lambda *_: box.send_signal(signal.SIGTERM))
            result = box.wait()
            if pump is not None:
                pump.close()
        record = replace(
            record, status="exited", exit_code=result.exit_code, error=result.error or ""
        )
    except (RuntimeFailure, OSError) as exc:
        record = replace(record, status="exited", exit_code=125, error=str(exc))
    return record


def _endpoint(root: Path, record: Record) -> Endpoint | None:
    from builder.run.usernets import Endpoint, is_user_network

    if not is_user_network(record.network):
        return None
    return Endpoint(root, record.network, record.id, record.name, record.aliases)


def _on_user_network(root: Path, record: Record) -> Record:
    """``record`` with its address, gateway and network id on its user network."""
    from builder.run.usernets import is_user_network, member

    found = member(root, record.network, record.id) if is_user_network(record.network) else None
    if found is None:
        return record
    network, me = found
    return replace(
        record,
        address=me.address,
        gateway=network.gateway,
        network_id=network.id,
        prefix_len=int(network.subnet.split("/")[1]),
    )


def stop_container(root: Path, record: Record, timeout: float) -> None:
    """The container's STOPSIGNAL, then SIGKILL after ``timeout`` seconds; returns once
    its record says it exited."""
    if record.status != "running":
        return
    pid1 = _container_pid1(record.init_pid)
    if pid1 is None:
        return
    signum = _signal_number(record.stop_signal)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid1, signum)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = load(root, record.id)
        if current is None or current.status != "running":
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid1, signal.SIGKILL)  # PID 1 gone: the kernel kills the whole namespace
    while (current := load(root, record.id)) is not None and current.status == "running":
        time.sleep(0.05)


def signal_container(record: Record, signum: int) -> bool:
    """Send ``signum`` to the running container's PID 1; False when it is not running."""
    pid1 = _container_pid1(record.init_pid) if record.status == "running" else None
    if pid1 is None:
        return False
    try:
        os.kill(pid1, signum)
    except ProcessLookupError:
        return False
    return True


def _container_pid1(init_pid: int) -> int | None:
    """The container's PID 1 on the host: the sandbox init's only child."""
    path = Path(f"/proc/{init_pid}/task/{init_pid}/children")
    try:
        children = path.read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _signal_number(name: str) -> int:
    """STOPSIGNAL as docker reads it: SIGTERM, TERM or 15; SIGTERM when it names none
    (an image from elsewhere may carry any string)."""
    number = parse_signal(name.strip())
    return int(signal.SIGTERM) if number is None else number


def _monitor_main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "--monitor" or not argv[3].isdigit():
        sys.stderr.write("usage: python -m builder.run.containers --monitor ROOT ID LEASE_FD\n")
        return 2
    return _monitor(Path(argv[1]), argv[2], int(argv[3]))


if __name__ == "__main__":
    raise SystemExit(_monitor_main(sys.argv[1:]))
