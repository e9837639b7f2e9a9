"""Images in and out of the store: ``GET /images/{name}/get`` and ``/images/get``
(save), ``POST /images/load``, ``POST /images/create`` (pull) and
``POST /images/{name}/push``, each a ``pybuild`` child (``children``) whose output lines
are streamed as docker's progress entries."""

from __future__ import annotations

import tempfile
from pathlib import Path

from builder.engine import auth, children
from builder.engine.errors import ApiError, bad_request
from builder.engine.images import find, opened
from builder.engine.state import Engine
from builder.engine.wire import CHUNK, Reply, Request


def save_one(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    _save(engine, request, reply, [params["name"]])


def save_many(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    names = request.args("names")
    if not names:
        raise bad_request("names is required")
    _save(engine, request, reply, names)


def _save(engine: Engine, request: Request, reply: Reply, names: list[str]) -> None:
    """A docker-archive of ``names`` (``pybuild save``), sent as it is read back."""
    with opened(engine) as storage:
        for name in names:
            find(storage, name)
    with tempfile.TemporaryDirectory(prefix="pybuild-save-") as tmp:
        out = Path(tmp) / "images.tar"
        finished = children.run(engine, ["save", "-o", str(out), *names], request.client_gone)
        if finished.code != 0:
            raise ApiError(500, children.error_message(finished))
        reply.stream("application/x-tar")
        with out.open("rb") as archive:
            while data := archive.read(CHUNK):
                reply.chunk(data)
        reply.end()


def load(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    """``pybuild load`` of the archive in the body; its ``Loaded image:`` lines."""
    with tempfile.TemporaryDirectory(prefix="pybuild-load-") as tmp:
        archive = Path(tmp) / "images.tar"
        with archive.open("wb") as out:
            while data := request.read():
                out.write(data)
        reply.stream()
        finished = children.run(
            engine,
            ["load", "-i", str(archive)],
            request.client_gone,
            lambda line: reply.line({"stream": line + "\n"}),
        )
        if finished.code != 0:
            message = children.error_message(finished)
            reply.line({"errorDetail": {"message": message}, "error": message})
        reply.end()


def pull(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    """``POST /images/create?fromImage=NAME&tag=TAG``: ``pybuild pull``."""
    name = request.arg("fromImage")
    if not name:
        raise ApiError(
            501, "images/create without fromImage (import) is not implemented by pybuild"
        )
    wanted = request.arg("tag")
    if wanted:
        name = f"{name}@{wanted}" if wanted.startswith("sha256:") else f"{name}:{wanted}"
    _registry_job(engine, request, reply, ["pull", name], name)


def push(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    """``POST /images/NAME/push?tag=TAG``: ``pybuild push``, credentials from
    ``X-Registry-Auth``."""
    name = params["name"]
    if wanted := request.arg("tag"):
        name = f"{name}:{wanted}"
    with opened(engine) as storage:
        find(storage, name)
    _registry_job(engine, request, reply, ["push", name], name)


def _registry_job(
    engine: Engine, request: Request, reply: Reply, argv: list[str], name: str
) -> None:
    registry = name.split("/", 1)[0] if "/" in name else "docker.io"
    with auth.docker_config(request, registry) as env:
        reply.stream()
        finished = children.run(
            engine,
            argv,
            request.client_gone,
            lambda line: reply.line({"status": line}),
            env,
        )
        if finished.code != 0:
            message = children.error_message(finished)
            reply.line({"errorDetail": {"message": message}, "error": message})
        elif argv[0] == "push":
            _push_result(reply, finished)
        reply.end()


def _push_result(reply: Reply, finished: children.Finished) -> None:
    """The aux record docker ends a push with: tag, digest and size."""
    for line in reversed(finished.lines):
        words = line.split()
        if len(words) >= 5 and words[1] == "digest:" and words[3] == "size:":
            reply.line(
                {"aux": {"Tag": words[0].rstrip(":"), "Digest": words[2], "Size": int(words[4])}}
            )
            return
