"""docker-py (PyPI ``docker``) against ``pybuild serve``: images.build with build args
and a target, containers.run returning its output, images list/get/remove, and the
errors docker-py raises for a failing RUN and a failing container. One server for the
module."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import write_context
from tests.integration.engine_server import Served, serving

docker = pytest.importorskip("docker", reason="needs docker-py (pip: docker)")

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

STAGES = (
    "FROM busybox AS base\n"
    "ARG WHO=nobody\n"
    "RUN echo hello $WHO > /greeting\n"
    'CMD ["cat", "/greeting"]\n'
    "FROM base AS extra\n"
    "RUN echo extra >> /greeting\n"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, base_archive: Path) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("engine-py"), base_archive) as server:
        yield server


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[Any]:
    api = docker.DockerClient(base_url=served.host, timeout=120)
    yield api
    api.close()


@pytest.fixture(scope="module")
def built(client: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Any]]:
    ctx = write_context(tmp_path_factory.mktemp("py-ctx"), {}, STAGES)
    image, logs = client.images.build(
        path=str(ctx), tag="pyapp:1", buildargs={"WHO": "docker-py"}, target="base"
    )
    return image, list(logs)


def test_images_build_takes_build_args_and_a_target(client: Any, built: Any) -> None:
    image, logs = built
    assert image.tags == ["pyapp:1"]
    streamed = "".join(entry.get("stream", "") for entry in logs)
    assert "MISS" in streamed and "extra" not in streamed  # the target's stage only
    assert any("aux" in entry and entry["aux"]["ID"] == image.id for entry in logs)


def test_containers_run_returns_the_output(client: Any, built: Any) -> None:
    assert client.containers.run("pyapp:1", remove=True) == b"hello docker-py\n"
    out = client.containers.run(
        "pyapp:1", ["sh", "-c", "echo $A-$(pwd)"], environment={"A": "x"}, working_dir="/tmp"
    )
    assert out == b"x-/tmp\n"
    both = ["sh", "-c", "echo out; echo err >&2"]
    assert client.containers.run("pyapp:1", both, remove=True) == b"out\n"  # stdout only
    assert client.containers.run("pyapp:1", both, stdout=False, stderr=True) == b"err\n"


def test_images_list_get_and_remove(client: Any, built: Any) -> None:
    image, _ = built
    assert ["pyapp:1"] in [i.tags for i in client.images.list()]
    got = client.images.get("pyapp:1")
    assert got.id == image.id and got.attrs["Config"]["Cmd"] == ["cat", "/greeting"]
    client.images.get("busybox").tag("pyapp", "2")
    client.images.remove("pyapp:2")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("pyapp:2")


@pytest.mark.parametrize("encoding", ["gzip", "xz"])
def test_compressed_context_stream_builds(client: Any, tmp_path: Path, encoding: str) -> None:
    ctx = write_context(tmp_path / "ctx", {"f.txt": "packed\n"}, "FROM busybox\nCOPY f.txt /\n")
    archive = tmp_path / "ctx.tar"
    mode = {"gzip": "w:gz", "xz": "w:xz"}[encoding]
    with tarfile.open(archive, mode) as tar:
        tar.add(ctx, arcname=".")
    with archive.open("rb") as body:
        logs = list(
            client.api.build(
                fileobj=body, custom_context=True, encoding=encoding, tag="packed:1", decode=True
            )
        )
    assert any("aux" in entry for entry in logs), logs
    assert client.containers.run("packed:1", ["cat", "/f.txt"], remove=True) == b"packed\n"


def test_concurrent_builds_and_runs_through_one_server_all_succeed(
    served: Served, built: Any, tmp_path: Path
) -> None:
    def build(n: int) -> str:
        api = docker.DockerClient(base_url=served.host, timeout=120)
        try:
            ctx = write_context(tmp_path / f"c{n}", {}, f"FROM busybox\nRUN echo {n} > /n\n")
            api.images.build(path=str(ctx), tag=f"many:{n}")
            out: bytes = api.containers.run(f"many:{n}", ["cat", "/n"], remove=True)
            return out.decode()
        finally:
            api.close()

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(build, range(3))) == ["0\n", "1\n", "2\n"]
    report = json.loads(served.pybuild("cache", "verify", "--json").out)
    assert report["clean"], report["findings"]


def test_failing_run_step_raises_build_error_with_the_message(client: Any, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "bad", {}, "FROM busybox\nRUN echo broken && exit 9\n")
    with pytest.raises(docker.errors.BuildError) as caught:
        client.images.build(path=str(ctx), tag="bad:1")
    assert "9" in str(caught.value)
    assert "broken" in "".join(e.get("stream", "") for e in caught.value.build_log)


def test_failing_container_raises_container_error_with_its_exit_status(
    client: Any, built: Any
) -> None:
    with pytest.raises(docker.errors.ContainerError) as caught:
        client.containers.run("pyapp:1", ["sh", "-c", "echo no >&2; exit 4"], remove=True)
    assert caught.value.exit_status == 4
    assert caught.value.stderr == b"no\n"
