"""The default network of RUN steps and `pybuild run` (a private namespace served by pasta):
outbound access works (pip through the proxy), the host's loopback, abstract unix sockets
and traffic stay out of reach, published ports answer. Each isolation check has a
``--network host`` control showing that the probe does see the host when allowed to."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context
from tests.integration.nethelp import (
    ABSTRACT_PROBE,
    LOOPBACK_PROBE,
    PACKET_PROBE,
    abstract_listener,
    free_port,
    http_get,
    loopback_listener,
    marker_traffic,
    probe,
)

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(shutil.which("pasta") is None, reason="needs pasta (Debian's passt)"),
]

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def netcli(
    tmp_path_factory: pytest.TempPathFactory, base_archive: Path, debian_archive: Path
) -> Pybuild:
    """One store for the module with busybox:latest and debian-py:bookworm loaded."""
    cli = Pybuild(tmp_path_factory.mktemp("netstore"))
    cli("load", "-i", base_archive)
    cli("load", "-i", debian_archive)
    return cli


def test_default_run_downloads_from_pypi(netcli: Pybuild, tmp_path: Path) -> None:
    dockerfile = """\
FROM debian-py:bookworm
COPY ca.crt /ca.crt
RUN pip download --no-deps --cert /ca.crt -d /tmp/x six && ls /tmp/x > /landed
FROM scratch
COPY --from=0 /landed /landed
"""
    ctx = write_context(tmp_path / "ctx", {"ca.crt": CA_BUNDLE.read_bytes()}, dockerfile)
    out = tmp_path / "out"
    netcli.build(ctx, "--no-cache", "-o", f"type=local,dest={out}")
    landed = (out / "landed").read_text().split()
    assert len(landed) == 1 and landed[0].startswith("six-"), landed


@pytest.mark.parametrize("host", [False, True], ids=["default", "host-control"])
def test_default_run_cannot_reach_a_host_loopback_listener(
    netcli: Pybuild, tmp_path: Path, host: bool
) -> None:
    with loopback_listener() as (port, listener):
        lines = probe(netcli.build, tmp_path / "ctx", LOOPBACK_PROBE, str(port), host)
    if host:
        assert "PROBE 127.0.0.1 CONNECTED" in lines, lines
        assert listener.accepted >= 1
    else:
        assert not [line for line in lines if "CONNECTED" in line], lines
        assert len(lines) == 2, lines  # its loopback and its gateway were both tried
        assert listener.accepted == 0


@pytest.mark.parametrize("host", [False, True], ids=["default", "host-control"])
def test_default_run_cannot_reach_a_host_abstract_unix_socket(
    netcli: Pybuild, tmp_path: Path, host: bool
) -> None:
    with abstract_listener() as (name, listener):
        lines = probe(netcli.build, tmp_path / "ctx", ABSTRACT_PROBE, name, host)
    if host:
        assert lines == ["PROBE CONNECTED"], lines
        assert listener.accepted == 1
    else:
        assert lines[0].startswith("PROBE FAILED"), lines
        assert listener.accepted == 0


@pytest.mark.parametrize("host", [False, True], ids=["default", "host-control"])
def test_default_run_packet_socket_sees_no_host_traffic(
    netcli: Pybuild, tmp_path: Path, host: bool
) -> None:
    marker = f"pybuild-marker-{uuid.uuid4().hex}"
    with marker_traffic(marker):
        lines = probe(netcli.build, tmp_path / "ctx", PACKET_PROBE, marker, host)
    assert len(lines) == 1, lines
    assert lines[0].endswith("MARKER-SEEN" if host else "MARKER-ABSENT"), lines


def test_run_network_host_needs_the_entitlement(netcli: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx", {}, "FROM busybox:latest\nRUN true\nRUN --network=host true\n"
    )
    refused = netcli.build(ctx, ok=False)
    assert refused.code != 0
    assert "Traceback" not in refused.err
    assert "Dockerfile:3" in refused.err, refused.err
    assert "--allow network.host" in refused.err, refused.err
    netcli.build(ctx, "--allow", "network.host")


@pytest.fixture
def www(tmp_path: Path) -> Path:
    site = tmp_path / "www"
    site.mkdir()
    (site / "index.html").write_text("hello from the private network\n")
    return site


@pytest.fixture
def containers(netcli: Pybuild) -> Iterator[list[str]]:
    """Names of detached containers to remove (forced) after the test."""
    names: list[str] = []
    yield names
    for name in names:
        netcli("rm", "-f", name, ok=False)


def _httpd(cli: Pybuild, name: str, publish: str, www: Path) -> None:
    cli(
        "run", "-d", "--name", name, "-p", publish, "-v", f"{www}:/www:ro",
        "busybox", "httpd", "-f", "-p", "8000", "-h", "/www",
    )  # fmt: skip


def test_published_port_answers_on_the_host(
    netcli: Pybuild, www: Path, containers: list[str]
) -> None:
    port = free_port()
    name = f"web{uuid.uuid4().hex[:6]}"
    containers.append(name)
    _httpd(netcli, name, f"127.0.0.1:{port}:8000", www)
    assert http_get(port) == (200, "hello from the private network\n")
    ps = netcli("ps").out
    assert f"127.0.0.1:{port}->8000/tcp" in ps, ps


def test_published_port_without_host_port_gets_a_free_one(
    netcli: Pybuild, www: Path, containers: list[str]
) -> None:
    name = f"web{uuid.uuid4().hex[:6]}"
    containers.append(name)
    _httpd(netcli, name, "8000", www)
    line = netcli("port", name, "8000").out.strip()
    inside, _, outside = line.partition(" -> ")
    assert inside == "8000/tcp", line
    port = int(outside.rpartition(":")[2])
    assert http_get(port)[0] == 200
    assert f":{port}->8000/tcp" in netcli("ps").out


SERVICE_APP = """\
import subprocess

import bottle


@bottle.route("/")
def index():
    uname = subprocess.run(["busybox", "uname", "-s"], capture_output=True, text=True)
    return f"bottle {bottle.__version__} on {uname.stdout.strip()}\\n"


bottle.run(host="0.0.0.0", port=8000, quiet=True)
"""

SERVICE_DOCKERFILE = """\
FROM debian-py:bookworm
COPY ca.crt /ca.crt
RUN apt-get update && apt-get install -y --no-install-recommends busybox \\
    && rm -rf /var/lib/apt/lists/*
RUN pip install --break-system-packages --no-cache-dir --cert /ca.crt bottle
COPY app.py /app.py
EXPOSE 8000
CMD ["python3", "/app.py"]
"""


def test_python_service_built_with_apt_and_pip_answers_on_a_published_port(
    netcli: Pybuild, tmp_path: Path, containers: list[str]
) -> None:
    files: dict[str, str | bytes] = {"ca.crt": CA_BUNDLE.read_bytes(), "app.py": SERVICE_APP}
    ctx = write_context(tmp_path / "ctx", files, SERVICE_DOCKERFILE)
    netcli.build(ctx, "--no-cache", "-t", "pyservice:1")
    port = free_port()
    name = f"svc{uuid.uuid4().hex[:6]}"
    containers.append(name)
    netcli("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "pyservice:1")
    status, body = http_get(port, wait=30)
    assert status == 200, body
    assert body.startswith("bottle ") and body.endswith(" on Linux\n"), body
