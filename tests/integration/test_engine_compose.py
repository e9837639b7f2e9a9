"""docker-compose 1.29 (Debian's, which drives the API through docker-py) against
``pybuild serve``: a two-service project with a ``build:`` section, a named volume and
an environment; build, up (the services print, one reaches the other by its service
name, and they exit), up again (they start again), down; and a failing build.
One server for the module."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clihelp import write_context
from tests.integration.engine_server import COMPOSE, NO_COMPOSE, Served, serving

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(COMPOSE is None, reason=NO_COMPOSE),
]

PROJECT = """\
version: "3.8"
services:
  web:
    build: .
    environment:
      GREETING: hello-from-web
    volumes:
      - data:/data
    command: ["sh", "-c", "cat /built; echo $$GREETING; echo kept > /data/file; sleep 2"]
  worker:
    image: busybox
    depends_on: [web]
    environment:
      - ROLE=worker
    command: ["sh", "-c", "echo I am the $$ROLE; ping -c 1 -W 2 web && echo reached web"]
volumes:
  data:
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, base_archive: Path) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("engine-compose"), base_archive) as server:
        yield server


def compose(served: Served, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, "--ansi", "never", *args],
        capture_output=True,
        text=True,
        cwd=project,
        env=served.env(),
        timeout=300,
        check=False,
    )


def test_compose_builds_runs_and_takes_down_a_two_service_project(
    served: Served, tmp_path: Path
) -> None:
    project = write_context(
        tmp_path / "shop",
        {"docker-compose.yml": PROJECT},
        "FROM busybox\nRUN echo web-built > /built\n",
    )
    built = compose(served, project, "build")
    assert built.returncode == 0, built.stderr
    assert "Successfully tagged shop_web:latest" in built.stdout + built.stderr
    up = compose(served, project, "up")
    assert up.returncode == 0, up.stderr
    shown = up.stdout
    assert "web-built" in shown and "hello-from-web" in shown, shown
    assert "I am the worker" in shown and "reached web" in shown, shown  # by service name
    assert "exited with code 0" in shown
    again = compose(served, project, "up")  # the stopped services start again
    assert again.returncode == 0, again.stderr
    assert "Starting shop_web_1" in again.stderr and "hello-from-web" in again.stdout
    data = served.root / "volumes" / "shop_data" / "_data" / "file"
    assert data.read_text() == "kept\n"  # the named volume is the store's
    down = compose(served, project, "down")
    assert down.returncode == 0, down.stderr
    assert "Removing network shop_default" in down.stderr
    assert served.docker("ps", "-a", "-q").stdout == ""
    assert "shop_default" not in served.docker("network", "ls").stdout
    assert "shop_default" not in served.pybuild("network", "ls").out


def test_compose_build_with_a_failing_run_exits_non_zero_with_the_error(
    served: Served, tmp_path: Path
) -> None:
    project = write_context(
        tmp_path / "broken",
        {"docker-compose.yml": "services:\n  app:\n    build: .\n"},
        "FROM busybox\nRUN echo compose-broke && exit 5\n",
    )
    built = compose(served, project, "build")
    assert built.returncode != 0
    assert "compose-broke" in built.stdout + built.stderr
    assert "exit" in built.stderr, built.stderr
