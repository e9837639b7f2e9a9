"""``POST /build``: the classic build protocol (``version=1``), run as ``pybuild build``.

The context tar is unpacked into a temp dir and built by a ``pybuild build --progress
plain`` child, so a build through the API is the CLI's build: the same keys, cache hits
and image digest. Each line of its progress is a ``{"stream": ...}`` entry (CACHED and
MISS lines included); then ``{"aux": {"ID": ...}}``, ``Successfully built <short id>``
and ``Successfully tagged <name>``, which docker-py and compose read to find the image.
A failure is ``{"errorDetail": ..., "error": ...}``: clients print it and exit non-zero.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

from builder.engine import auth, children
from builder.engine.context import unpacked_context
from builder.engine.errors import ApiError, bad_request
from builder.engine.state import Engine
from builder.engine.wire import Reply, Request

SESSION_HOLD = 60.0
_NETWORKS = {
    "": "default",
    "default": "default",
    "bridge": "default",
    "host": "host",
    "none": "none",
}
# accepted and ignored: the classic builder's container settings, which pybuild's RUN
# steps take from the Dockerfile and the store instead
_IGNORED = ("rm", "forcerm", "cachefrom", "memory", "memswap", "cpushares", "shmsize")


def prune(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    raise ApiError(
        501, "POST /build/prune is not implemented by pybuild: use `pybuild cache prune`"
    )


def session(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    """``POST /session``: the BuildKit client opens it beside its ``version=2`` build.
    The upgrade is granted and the stream held, unanswered, until the client leaves (at
    most ``SESSION_HOLD`` seconds): the build request's error, which says to use the
    classic builder, is then what the client reports, rather than a failed dial."""
    reply.hijack(upgrade=True, protocol=request.headers.get("upgrade", "h2c"))
    request.hijacked = True
    deadline = time.monotonic() + SESSION_HOLD
    while time.monotonic() < deadline and not engine.stopping.is_set():
        if request.client_gone():
            return
        time.sleep(0.2)


def build(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    if request.arg("version", "1") == "2":
        raise bad_request(
            "pybuild does not speak the BuildKit session protocol (version=2): use the "
            "classic builder, e.g. DOCKER_BUILDKIT=0 docker build (docker-py and "
            "docker-compose use it already)"
        )
    if request.arg("remote"):
        raise ApiError(501, "building from a remote URL (remote=) is not implemented by pybuild")
    args = build_args(request)
    with (
        unpacked_context(request) as context,
        auth.docker_config(request) as env,
        tempfile.TemporaryDirectory(prefix="pybuild-iid-") as tmp,
    ):
        iidfile = Path(tmp) / "iid"
        dockerfile = _dockerfile(context, request.arg("dockerfile"))
        argv = ["build", "--progress", "plain", "--iidfile", str(iidfile), *args]
        argv += [*(["-f", str(dockerfile)] if dockerfile else []), str(context)]
        _stream_build(engine, request, reply, argv, env, iidfile)


def build_args(request: Request) -> list[str]:
    """The query parameters as ``pybuild build`` flags (400 on a bad value)."""
    args: list[str] = []
    for tag in request.args("t"):
        if tag:
            args += ["-t", tag]
    args += _pairs(request.json_arg("buildargs"), "buildargs", "--build-arg")
    args += _pairs(request.json_arg("labels"), "labels", "--label")
    if target := request.arg("target"):
        args += ["--target", target]
    if request.flag("nocache"):
        args.append("--no-cache")
    if request.flag("pull"):
        args.append("--pull")
    mode = request.arg("networkmode")
    if mode not in _NETWORKS:
        raise bad_request(f"networkmode {mode!r}: pybuild builds with default, host or none")
    args += ["--network", _NETWORKS[mode]]
    if platform := request.arg("platform"):
        args += ["--platform", platform]
    return args


def _pairs(doc: Any, name: str, flag: str) -> list[str]:
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise bad_request(f"{name}: expected a JSON object")
    out: list[str] = []
    for key, value in doc.items():
        if value is not None:  # docker: a null build arg is unset
            out += [flag, f"{key}={value}"]
    return out


def _dockerfile(context: Path, name: str) -> Path | None:
    if not name or name == "Dockerfile":
        return None
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise bad_request(f"dockerfile {name!r}: must be a path inside the build context")
    return context / relative


def _stream_build(
    engine: Engine,
    request: Request,
    reply: Reply,
    argv: list[str],
    env: dict[str, str],
    iidfile: Path,
) -> None:
    quiet = request.flag("q")
    reply.stream()

    def show(line: str) -> None:
        if not quiet:
            reply.line({"stream": line + "\n"})

    finished = children.run(engine, argv, request.client_gone, show, env)
    if finished.code != 0 or not iidfile.is_file():
        message = children.error_message(finished)
        reply.line({"errorDetail": {"code": finished.code, "message": message}, "error": message})
        reply.end()
        return
    image_id = iidfile.read_text().strip()
    reply.line({"aux": {"ID": image_id}})
    if quiet:
        reply.line({"stream": image_id + "\n"})
    else:
        reply.line({"stream": f"Successfully built {image_id.removeprefix('sha256:')[:12]}\n"})
        for tag in request.args("t"):
            if tag:
                reply.line({"stream": f"Successfully tagged {_tag_name(tag)}\n"})
    reply.end()


def _tag_name(tag: str) -> str:
    """The name as docker shows it: ``app`` is ``app:latest``."""
    last = tag.rsplit("/", 1)[-1]
    return tag if ":" in last or "@" in tag else f"{tag}:latest"
