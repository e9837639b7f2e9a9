"""``pybuild run``: turn an image's config and the user's flags into a ContainerSpec.

docker's rules: ``--entrypoint`` replaces ENTRYPOINT and drops the image's CMD; command
arguments replace CMD; ``-e`` (after ``--env-file``) overrides the image's Env; ``-w``/``-u``
override WorkingDir/User. The container's writable layer lives under
``<store>/containers/<id>`` and goes when the container is removed (at once for a
foreground run; ``pybuild rm`` for a detached one).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import UsageError
from builder.frontend.units import SizeOutOfRange, ram_in_bytes
from builder.images.store import Storage
from builder.plan.state import env_to_dict, set_env
from cache.errors import CacheError
from cache.images import StoredImage
from cache.leases import Lease
from cache.oci import Platform
from fstree.tree import remove_tree
from runtime.netns import PortForward
from runtime.spec import BindMount, ContainerSpec, Resources, Rootfs, RunResult, TmpfsMount

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIN_MEMORY = 6 * 2**20  # docker: "Minimum memory limit allowed is 6MB"
MIN_CPUS = 0.01  # docker: NanoCPUs of at least 1e7
if TYPE_CHECKING:
    from builder.run.usernets import Endpoint

_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class RunRequest:
    image: str
    command: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    entrypoint: str | None = None
    network: str = "default"  # default (private, outbound access), host, none or a user network
    network_aliases: tuple[str, ...] = ()  # --network-alias (user networks only)
    name: str | None = None  # --name (how other containers on a user network find it)
    publish: tuple[str, ...] = ()  # -p [IP:][HOST:]CONTAINER[/PROTO]
    publish_all: bool = False  # -P: every EXPOSE of the image on a free host port
    volumes: tuple[str, ...] = ()
    interactive: bool = False
    tty: bool = False
    hostname: str | None = None
    resources: Resources = field(default_factory=Resources)
    tmpfs: tuple[str, ...] = ()  # PATH[:size=N,mode=M]
    read_only: bool = False
    env_files: tuple[Path, ...] = ()
    add_hosts: tuple[str, ...] = ()  # HOST:IP
    init: bool = False  # --init: ours as PID 1; off: the command is PID 1 (docker)
    no_new_privs: bool = False  # --security-opt no-new-privileges
    # --platform: which image of a multi-platform index (None: this machine's)
    platform: Platform | None = None


@dataclass(frozen=True)
class Prepared:
    """A container ready to start: its id, its spec and its home in the store."""

    container_id: str
    spec: ContainerSpec
    home: Path
    image: StoredImage
    stop_signal: str = "SIGTERM"  # the image's STOPSIGNAL, for `pybuild stop`
    ports: tuple[PortForward, ...] = ()  # published, host ports chosen


def parse_bytes(text: str, flag: str) -> int:
    """docker's sizes (go-units RAMInBytes): a number with an optional b/k/m/g/t/p unit
    (powers of 1024); UsageError naming ``flag`` unless it is positive."""
    hint = "e.g. 512m, 2g or 1048576"
    try:
        size = ram_in_bytes(text)
    except SizeOutOfRange:
        raise UsageError(f"{flag} {text!r}: too large", hint=hint) from None
    except ValueError:
        size = 0
    if size <= 0:
        raise UsageError(f"{flag} {text!r}: expected a positive size", hint=hint)
    return size


def parse_security_opts(opts: list[str]) -> bool:
    """docker's ``--security-opt``: only ``no-new-privileges`` (bare, ``:true``/``=true``
    or ``:false``) is supported; returns whether no_new_privs is asked for (last wins)."""
    no_new_privs = False
    for opt in opts:
        name, sep, value = opt.replace("=", ":", 1).partition(":")
        if name != "no-new-privileges":
            raise UsageError(
                f"--security-opt {opt!r} is not supported",
                hint="only no-new-privileges[:true|false] is; seccomp, apparmor and "
                "label options are not",
            )
        if value not in ("true", "false") and (sep or value):
            raise UsageError(
                f"--security-opt {opt!r}: expected true or false after no-new-privileges",
                hint="e.g. --security-opt no-new-privileges",
            )
        no_new_privs = value != "false"
    return no_new_privs


def parse_resources(memory: str | None, pids: int | None, cpus: float | None) -> Resources:
    """``--memory``/``--pids-limit``/``--cpus`` as docker reads them (pids <= 0: none)."""
    if cpus is not None and not cpus > 0:
        raise UsageError(f"--cpus {cpus}: expected a positive number", hint="e.g. 0.5 or 2")
    if cpus is not None and not MIN_CPUS <= cpus < 2**63 / 1e9:  # docker: NanoCPUs >= 1e7
        raise UsageError(
            f"--cpus {cpus}: out of range", hint=f"give at least {MIN_CPUS} (docker's minimum)"
        )
    limit = None if memory is None else parse_bytes(memory, "--memory")
    if limit is not None and limit < MIN_MEMORY:
        raise UsageError(
            f"--memory {memory}: the minimum memory limit allowed is 6MB (as in docker)",
            hint="give at least 6m; a container needs some memory to start",
        )
    return Resources(
        memory=limit,
        pids=pids if pids is not None and pids > 0 else None,
        cpus=cpus,
    )


def command_line(image: StoredImage, request: RunRequest) -> tuple[str, ...]:
    config = image.config.config
    if request.entrypoint is not None:
        entrypoint: tuple[str, ...] = (request.entrypoint,) if request.entrypoint else ()
        cmd = request.command
    else:
        entrypoint = config.entrypoint or ()
        cmd = request.command or (config.cmd or ())
    argv = (*entrypoint, *cmd)
    if not argv:
        raise UsageError(
            f"no command specified: image {request.image} has no CMD or ENTRYPOINT",
            hint="give a command after the image name",
        )
    return argv


def read_env_files(paths: tuple[Path, ...]) -> tuple[str, ...]:
    """``--env-file``: K=V lines (K alone takes our value); blank and # lines skipped."""
    entries: list[str] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--env-file {path}: cannot read it: {exc}") from None
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.lstrip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("="):
                raise UsageError(f"--env-file {path}, line {number}: variable name is empty")
            entries.append(line)
    return tuple(entries)


def environment(image: StoredImage, request: RunRequest) -> tuple[str, ...]:
    env = image.config.config.env
    for item in (*read_env_files(request.env_files), *request.env):
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"-e {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        env = set_env(env, key, value)
    if "PATH" not in env_to_dict(env):
        env = set_env(env, "PATH", DEFAULT_PATH)
    return env


def bind_mounts(volumes: tuple[str, ...], store: Path) -> tuple[BindMount, ...]:
    """``-v HOST:CTR[:ro|rw]`` binds; a HOST without a slash is a named volume, kept
    under ``<store>/volumes/<name>/_data`` (created on first use) as docker does."""
    mounts = []
    for spec in volumes:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise UsageError(
                f"-v {spec}: expected HOST:CONTAINER[:ro] or NAME:CONTAINER[:ro]",
                hint="a host path must be absolute; a name starts with a letter or digit",
            )
        if not parts[1].startswith("/"):
            raise UsageError(f"-v {spec}: container path must be absolute")
        if "/" not in parts[0]:
            source = named_volume(store, parts[0])
        else:
            source = Path(parts[0])
            if not source.is_absolute() or not source.exists():
                raise UsageError(
                    f"-v {spec}: host path {parts[0]} must be an absolute, existing path"
                )
        mounts.append(BindMount(source, parts[1], readonly=len(parts) == 3 and parts[2] == "ro"))
    return tuple(mounts)


def named_volume(store: Path, name: str) -> Path:
    """The data directory of volume ``name``, created if new."""
    if not _VOLUME_NAME.match(name):
        raise UsageError(
            f"-v {name}: invalid volume name",
            hint="use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    data = store / "volumes" / name / "_data"
    data.mkdir(parents=True, exist_ok=True)
    return data


def tmpfs_mounts(specs: tuple[str, ...]) -> tuple[TmpfsMount, ...]:
    """``--tmpfs PATH[:size=N,mode=OCTAL]`` (other options, like docker's, are refused)."""
    mounts = []
    for spec in specs:
        target, _, options = spec.partition(":")
        if not target.startswith("/"):
            raise UsageError(f"--tmpfs {spec}: the path must be absolute")
        size: int | None = None
        mode = 0o1777
        for option in filter(None, options.split(",")):
            key, _, value = option.partition("=")
            if key == "size":
                size = parse_bytes(value, f"--tmpfs {spec}: size")
            elif key == "mode" and re.fullmatch(r"[0-7]{1,4}", value):
                mode = int(value, 8)
            else:
                raise UsageError(
                    f"--tmpfs {spec}: unsupported option {option!r}",
                    hint="supported: size=N (e.g. 64m), mode=OCTAL (e.g. 1777)",
                )
        mounts.append(TmpfsMount(target, size, mode))
    return tuple(mounts)


def hosts_file(hostname: str, add_hosts: tuple[str, ...]) -> str:
    """/etc/hosts: localhost and our hostname, then each ``--add-host HOST:IP``."""
    lines = [f"127.0.0.1\tlocalhost {hostname}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for item in add_hosts:
        host, sep, ip = item.partition(":")
        if not sep or not host or not ip or any(c.isspace() for c in item):
            raise UsageError(f"--add-host {item!r}: expected HOST:IP", hint="e.g. db:10.0.0.5")
        lines.append(f"{ip}\t{host}")
    return "\n".join(lines) + "\n"


def image_layers(storage: Storage, image: StoredImage, name: str) -> list[Path]:
    """The image's unpacked layer dirs, bottom first, each dir once.

    A layer digest can occur twice (BuildKit commits an empty layer for every RUN,
    COPY or WORKDIR that changed nothing); both share one unpacked dir, and overlayfs
    refuses a lower listed twice (ELOOP). Only the top-most occurrence is kept: the
    lower copy adds nothing the upper one does not already show.
    """
    try:
        dirs = [
            storage.layers.ensure(layer, diff)
            for layer, diff in zip(image.manifest.layers, image.config.diff_ids, strict=True)
        ]
    except CacheError as exc:
        raise UsageError(f"cannot unpack image {name}: {exc.message}", hint=exc.hint) from None
    top_first = dict.fromkeys(reversed(dirs))
    return list(reversed(top_first))


def prepare(storage: Storage, request: RunRequest) -> Prepared:
    """Resolve the image and the flags into a spec, and make the container's home."""
    image = storage.get_image(request.image, request.platform)
    argv = command_line(image, request)
    mounts = bind_mounts(request.volumes, storage.root)
    tmpfs = tmpfs_mounts(request.tmpfs)
    env = environment(image, request)
    dirs = image_layers(storage, image, request.image)
    container_id = secrets.token_hex(32)
    hostname = request.hostname or container_id[:12]
    hosts = hosts_file(hostname, request.add_hosts)
    home = storage.root / "containers" / container_id
    upper, work = home / "upper", home / "work"
    upper.mkdir(parents=True)
    work.mkdir()
    config = image.config.config
    ports = published_ports(request, config.exposed_ports)
    spec = ContainerSpec(
        rootfs=Rootfs(tuple(reversed(dirs)), upper, work),
        args=argv,
        env=env,
        cwd=request.workdir or config.working_dir or "/",
        user=request.user if request.user is not None else config.user,
        hostname=hostname,
        network=request.network if request.network in ("host", "none") else "default",
        mounts=mounts,
        hosts=hosts,
        tty=request.tty,
        readonly_rootfs=request.read_only,
        tmpfs=tmpfs,
        resources=request.resources,
        init=request.init,
        no_new_privs=request.no_new_privs,
        scratch=home,  # the sandbox's scratch goes with the container's home
    )
    return Prepared(container_id, spec, home, image, config.stop_signal or "SIGTERM", ports)


def published_ports(request: RunRequest, exposed: tuple[str, ...]) -> tuple[PortForward, ...]:
    """``-p`` and ``-P`` as forwards, free host ports chosen; only the default network
    publishes (docker discards them with host networking; none has nothing to reach)."""
    from builder.run.ports import allocate, exposed_forwards, parse_publish

    wanted = [port for item in request.publish for port in parse_publish(item)]
    if request.publish_all:
        taken = {(p.container_port, p.protocol) for p in wanted}
        wanted += [
            p for p in exposed_forwards(exposed) if (p.container_port, p.protocol) not in taken
        ]
    if not wanted:
        return ()
    if request.network in ("host", "none"):
        raise UsageError(
            f"ports cannot be published with --network {request.network}",
            hint="publish from the default network (drop --network); with --network host "
            "the container's ports are the host's already",
        )
    return allocate(wanted)


def run_image(storage: Storage, request: RunRequest) -> RunResult:
    """Run the image in the foreground; the result carries docker's exit code
    (125/126/127 on failures). The container's writable layer is removed after.

    Holds ``build_guard`` only while the image's layers are unpacked; the container then
    holds a lease on them, so a prune keeps them without waiting for it to exit.
    """
    from builder.run.network import attached
    from runtime.run import run_container  # the sandbox, not needed by builds

    prepared, lease = prepare_leased(storage, request)
    try:
        # A locked store temp dir: if we are killed, the next build sweeps the scratch.
        with lease, storage.blobs.temp_dir() as scratch:
            spec = replace(prepared.spec, scratch=scratch)
            endpoint = _endpoint(storage, request, prepared)
            with attached(spec, scratch, prepared.ports, endpoint) as joined:
                return run_container(joined, interactive=request.interactive, tty=request.tty)
    finally:
        remove_tree(prepared.home, ignore_errors=True)


def _endpoint(storage: Storage, request: RunRequest, prepared: Prepared) -> Endpoint | None:
    from builder.run.usernets import Endpoint, is_user_network

    if not is_user_network(request.network):
        return None
    name = request.name or prepared.container_id[:12]
    return Endpoint(
        storage.root, request.network, prepared.container_id, name, request.network_aliases
    )


def prepare_leased(storage: Storage, request: RunRequest) -> tuple[Prepared, Lease]:
    """``prepare``, under ``build_guard``, and a lease on what the container will use."""
    from cache.gclock import build_guard
    from cache.leases import take_lease

    with build_guard(storage.root):  # prune must not take the layers before the lease holds
        prepared = prepare(storage, request)
        try:
            return prepared, take_lease(storage.root, prepared.container_id, prepared.image)
        except BaseException:
            shutil.rmtree(prepared.home, ignore_errors=True)
            raise


def run_runc(storage: Storage, prepared: Prepared) -> int:
    """Write the container's bundle and run it with ``runc run`` in the foreground."""
    runc = shutil.which("runc")
    if runc is None:
        raise UsageError("--runtime runc: runc is not installed", hint="apt-get install runc")
    from builder.run.network import attached

    bundle = prepared.home / "bundle"
    try:
        with attached(prepared.spec, prepared.home, prepared.ports) as joined:
            write_bundle_dir(storage, replace(prepared, spec=joined), bundle)
            command = [runc, "--root", str(prepared.home / "runc-state"), "run"]
            command += ["--bundle", str(bundle), prepared.container_id[:32]]
            return subprocess.run(command, check=False).returncode
    finally:
        remove_tree(prepared.home, ignore_errors=True)


def write_bundle_dir(storage: Storage, prepared: Prepared, bundle: Path) -> Path:
    """``bundle/rootfs`` (the image's layers, flattened) and ``bundle/config.json``."""
    from builder.images.save import write_rootfs
    from runtime.ocispec import write_bundle

    rootfs = bundle / "rootfs"
    write_rootfs(storage.blobs, prepared.image.digest, rootfs)
    return write_bundle(replace(prepared.spec, init=False), rootfs, bundle)
