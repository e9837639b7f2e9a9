"""``pybuild run``: turn an image's config and the user's flags into a ContainerSpec.

docker's rules: ``--entrypoint`` replaces ENTRYPOINT and drops the image's CMD; command
arguments replace CMD; ``-e`` overrides the image's Env; ``-w``/``-u`` override
WorkingDir/User. The container's writable layer is discarded when it exits.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from builder.errors import UsageError
from builder.state import env_to_dict, set_env
from builder.storage import Storage
from cache.errors import CacheError
from cache.images import StoredImage
from runtime.run import run_container
from runtime.spec import BindMount, ContainerSpec, Rootfs, RunResult


@dataclass(frozen=True)
class RunRequest:
    image: str
    command: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    entrypoint: str | None = None
    network: str = "host"
    volumes: tuple[str, ...] = ()
    interactive: bool = False
    tty: bool = False
    hostname: str | None = None


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


def environment(image: StoredImage, request: RunRequest) -> tuple[str, ...]:
    env = image.config.config.env
    for item in request.env:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"-e {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        env = set_env(env, key, value)
    if "PATH" not in env_to_dict(env):
        env = set_env(env, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return env


def bind_mounts(volumes: tuple[str, ...]) -> tuple[BindMount, ...]:
    mounts = []
    for spec in volumes:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise UsageError(
                f"-v {spec}: expected HOST:CONTAINER[:ro]",
                hint="named volumes are not supported yet; give a host path",
            )
        source = Path(parts[0])
        if not source.is_absolute() or not source.exists():
            raise UsageError(f"-v {spec}: host path {parts[0]} must be an absolute, existing path")
        if not parts[1].startswith("/"):
            raise UsageError(f"-v {spec}: container path must be absolute")
        mounts.append(BindMount(source, parts[1], readonly=len(parts) == 3 and parts[2] == "ro"))
    return tuple(mounts)


def run_image(storage: Storage, request: RunRequest) -> RunResult:
    """Run the image; the result carries docker's exit code (125/126/127 on failures)."""
    image = storage.get_image(request.image)
    argv = command_line(image, request)
    mounts = bind_mounts(request.volumes)
    try:
        dirs = [
            storage.layers.ensure(layer, diff)
            for layer, diff in zip(image.manifest.layers, image.config.diff_ids, strict=True)
        ]
    except CacheError as exc:
        raise UsageError(
            f"cannot unpack image {request.image}: {exc.message}", hint=exc.hint
        ) from None
    container_id = secrets.token_hex(32)
    home = storage.root / "containers" / container_id
    upper, work = home / "upper", home / "work"
    upper.mkdir(parents=True)
    work.mkdir()
    config = image.config.config
    spec = ContainerSpec(
        rootfs=Rootfs(tuple(reversed(dirs)), upper, work),
        args=argv,
        env=environment(image, request),
        cwd=request.workdir or config.working_dir or "/",
        user=request.user if request.user is not None else config.user,
        hostname=request.hostname or container_id[:12],
        network=request.network,
        mounts=mounts,
        tty=request.tty,
    )
    try:
        result = run_container(spec, interactive=request.interactive, tty=request.tty)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return result
