"""Debian's docker CLI (20.10, the client only) against ``pybuild serve``: version,
the classic build with its cache, images, run, tag, save/load, rmi, push, errors, and
a build cancelled by its client going away. One server for the module."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, processes_with, write_context
from tests.integration.engine_server import DOCKER_CLI, NO_DOCKER_CLI, Served, serving
from tests.integration.registry_server import (
    HTPASSWD_BIN,
    MISSING_REASON,
    REGISTRY_BIN,
    run_registry,
)

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(DOCKER_CLI is None, reason=NO_DOCKER_CLI),
]

APP = (
    "FROM busybox\n"
    "ARG SOURCE_DATE_EPOCH\n"
    "COPY greeting.txt /greeting.txt\n"
    "RUN echo built > /built.txt\n"
    'CMD ["sh", "-c", "cat /greeting.txt /built.txt; exit 3"]\n'
)
EPOCH = ("--build-arg", "SOURCE_DATE_EPOCH=1700000000")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, base_archive: Path) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("engine-cli"), base_archive) as server:
        yield server


@pytest.fixture(scope="module")
def app(served: Served, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``app:1`` built twice by ``docker build``: both outputs and the context."""
    ctx = write_context(tmp_path_factory.mktemp("app"), {"greeting.txt": "hello\n"}, APP)
    first = served.docker("build", *EPOCH, "-t", "app:1", ctx)
    second = served.docker("build", *EPOCH, "-t", "app:1", ctx)
    return {"first": first.stdout, "second": second.stdout, "ctx": str(ctx)}


def test_docker_version_names_the_engine_and_its_api_versions(served: Served) -> None:
    out = served.docker("version").stdout
    assert "Server: pybuild" in out
    assert "API version:      1.41 (minimum version 1.24)" in out


def test_socket_is_private_to_the_serving_user(served: Served) -> None:
    st = served.socket.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()


def test_docker_build_streams_our_progress_and_the_rebuild_hits_the_cache(
    app: dict[str, str],
) -> None:
    first, second = app["first"], app["second"]
    assert "MISS" in first and "RUN echo built" in first
    assert "Successfully tagged app:1" in first
    assert second.count("CACHED") == 2 and "2/2 steps cached (100%)" in second
    built = [line for line in second.splitlines() if line.startswith("Successfully built ")]
    assert len(built) == 1 and built[0].split()[-1] in first


def test_api_build_has_the_cli_build_digest_and_cache_hits(
    served: Served, app: dict[str, str], tmp_path: Path, base_archive: Path
) -> None:
    image_id = served.docker("image", "inspect", "-f", "{{.Id}}", "app:1").stdout.strip()
    # the same context and arguments built by the CLI into a store of its own
    alone = Pybuild(tmp_path / "store")
    alone("load", "-i", base_archive)
    out = alone.build(Path(app["ctx"]), *EPOCH, "-t", "app:1")
    assert "0/2 steps cached" in out.err
    api_built = served.pybuild.inspect("app:1")
    assert alone.inspect("app:1")["Id"] == image_id == api_built["Id"]
    assert alone.inspect("app:1")["Digest"] == api_built["Digest"]  # the manifest too
    # and by the CLI into the server's store: every step hits what the API built
    again = served.pybuild.build(Path(app["ctx"]), *EPOCH, "-t", "app:1")
    assert "2/2 steps cached (100%)" in again.err
    assert served.pybuild.inspect("app:1")["Digest"] == api_built["Digest"]


def test_docker_images_lists_the_built_image(served: Served, app: dict[str, str]) -> None:
    rows = served.docker("images").stdout.splitlines()
    assert rows[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(r.split()[:2] == ["app", "1"] for r in rows[1:])


def test_docker_run_rm_prints_the_output_and_passes_the_exit_code(
    served: Served, app: dict[str, str]
) -> None:
    done = served.docker("run", "--rm", "app:1", ok=False)
    assert done.stdout == "hello\nbuilt\n"
    assert done.returncode == 3, done.stderr
    args = ("run", "--rm", "-e", "WHO=env", "app:1", "sh", "-c", "echo hi $WHO")
    assert served.docker(*args).stdout == "hi env\n"
    assert served.docker("ps", "-a", "-q").stdout == ""  # --rm removed them
    tty = served.docker("run", "-t", "--rm", "app:1", ok=False)
    assert tty.returncode == 125 and "drop -t/--tty" in tty.stderr, tty.stderr


def test_detached_container_is_listed_logged_killed_and_removed(
    served: Served, app: dict[str, str]
) -> None:
    script = (
        "echo started; echo oops >&2; trap 'echo bye; exit 5' TERM; while :; do sleep 0.1; done"
    )
    cid = served.docker("run", "-d", "--name", "svc", "app:1", "sh", "-c", script).stdout.strip()
    deadline = time.monotonic() + 15
    while "started" not in served.docker("logs", "svc").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cid[:12] in served.docker("ps").stdout
    assert "svc" in served.pybuild("ps").out  # the CLI's records: the same container
    logs = served.docker("logs", "svc")
    assert (logs.stdout, logs.stderr) == ("started\n", "oops\n")
    served.docker("kill", "-s", "TERM", "svc")
    assert served.docker("wait", "svc").stdout.strip() == "5"
    assert "Exited (5)" in served.docker("ps", "-a").stdout
    assert served.docker("logs", "--tail", "1", "svc").stdout == "bye\n"
    served.docker("rm", "svc")
    assert "svc" not in served.docker("ps", "-a").stdout
    assert "svc" not in served.pybuild("ps", "-a").out


def test_restarted_server_still_knows_its_containers(base_archive: Path, tmp_path: Path) -> None:
    with serving(tmp_path, base_archive) as first:
        first.docker("run", "-d", "--name", "kept", "busybox", "sleep", "60")
        first.docker("create", "--name", "later", "busybox", "echo", "later")
    with serving(tmp_path, base_archive) as second:
        listed = second.docker("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout
        assert sorted(listed.splitlines()) == ["kept running", "later created"]
        assert second.docker("start", "-a", "later").stdout == "later\n"
        second.docker("rm", "-f", "kept", "later")
        assert second.docker("ps", "-a", "-q").stdout == ""
        assert second.pybuild("ps", "-a").out.count("\n") == 1  # the header only


def test_docker_tag_save_load_and_rmi(served: Served, app: dict[str, str], tmp_path: Path) -> None:
    image_id = served.docker("image", "inspect", "-f", "{{.Id}}", "app:1").stdout.strip()
    served.docker("tag", "app:1", "copy:2")
    assert "copy" in served.docker("images", "copy").stdout
    archive = tmp_path / "copy.tar"
    served.docker("save", "-o", archive, "copy:2")
    assert archive.stat().st_size > 1000
    both = tmp_path / "both.tar"
    served.docker("save", "-o", both, "copy:2", "busybox")  # GET /images/get?names=...
    with tarfile.open(both) as tar:
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None
        tags = sorted(t for entry in json.load(manifest) for t in entry["RepoTags"])
    assert tags == ["busybox:latest", "copy:2"]
    assert "RUN" in served.docker("history", "copy:2").stdout
    removed = served.docker("rmi", "copy:2").stdout
    assert "Untagged: copy:2" in removed
    assert served.docker("image", "inspect", "copy:2", ok=False).returncode == 1
    loaded = served.docker("load", "-i", archive).stdout
    assert "Loaded image: copy:2" in loaded
    assert served.docker("image", "inspect", "-f", "{{.Id}}", "copy:2").stdout.strip() == image_id


@pytest.mark.skipif(REGISTRY_BIN is None or HTPASSWD_BIN is None, reason=MISSING_REASON)
def test_docker_login_then_push_pull_and_build_from_a_password_protected_registry(
    served: Served, app: dict[str, str], tmp_path: Path
) -> None:
    with run_registry(tmp_path / "registry", user="ann", password="s3cret") as registry:
        name = f"{registry.host}/team/app:1"
        served.docker("tag", "app:1", name)
        refused = served.docker("push", name, ok=False)
        assert refused.returncode != 0  # no credentials yet
        wrong = ("login", "-u", "ann", "--password-stdin", registry.host)
        assert served.docker(*wrong, ok=False, input="nope\n").returncode != 0
        served.docker(*wrong, input="s3cret\n")  # kept by the client, sent per request
        done = served.docker("push", name)
        assert "digest: sha256:" in done.stdout, done.stdout
        served.docker("rmi", name)
        served.docker("pull", name)
        pulled = served.docker("image", "inspect", "-f", "{{.Id}}", name).stdout
        built = served.docker("image", "inspect", "-f", "{{.Id}}", "app:1").stdout
        assert pulled == built
        # a build whose base is only in that registry: X-Registry-Config carries the login
        served.docker("rmi", name)
        ctx = write_context(tmp_path / "on-top", {}, f"FROM {name}\nRUN echo on top\n")
        served.docker("build", "-t", "ontop:1", ctx)
        assert served.docker("run", "--rm", "ontop:1", ok=False).stdout == "hello\nbuilt\n"


def test_docker_build_with_a_dockerfile_outside_the_context_and_a_dockerignore(
    served: Served, tmp_path: Path
) -> None:
    files = {"keep.txt": "kept\n", "skip.txt": "skipped\n", ".dockerignore": "skip.txt\n"}
    ctx = write_context(tmp_path / "ctx", files, "FROM busybox\n")
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text('FROM busybox\nCOPY . /c\nCMD ["ls", "/c"]\n')
    served.docker("build", "-f", outside, "-t", "outside:1", ctx)
    listed = served.docker("run", "--rm", "outside:1").stdout.split()
    assert "keep.txt" in listed and "skip.txt" not in listed


def test_failing_run_step_fails_docker_build_with_its_error(served: Served, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "bad", {}, "FROM busybox\nRUN echo oops && exit 7\n")
    done = served.docker("build", "-t", "bad:1", ctx, ok=False)
    assert done.returncode != 0
    assert "oops" in done.stdout
    assert "exit code 7" in done.stderr or "exit 7" in done.stderr, done.stderr


def test_unsupported_endpoint_answers_not_implemented_by_pybuild(served: Served) -> None:
    done = served.docker("system", "df", ok=False)
    assert done.returncode != 0
    assert "not implemented by pybuild" in done.stderr, done.stderr
    assert "GET /v1.41/system/df 501" in served.log.read_text()  # every request is logged


def test_buildkit_session_build_is_refused_with_the_way_out(
    served: Served, app: dict[str, str]
) -> None:
    assert DOCKER_CLI is not None
    done = subprocess.run(
        [DOCKER_CLI, "build", "-t", "bk:1", app["ctx"]],
        capture_output=True,
        text=True,
        env=served.env(DOCKER_BUILDKIT="1"),
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "DOCKER_BUILDKIT=0" in done.stderr, done.stderr


def test_client_that_goes_away_cancels_its_build_cleanly(served: Served, tmp_path: Path) -> None:
    seconds = random.randrange(5000, 6000)  # names this test's sleep among all processes
    dockerfile = f"FROM busybox\nRUN echo step-started && sleep {seconds}\n"
    ctx = write_context(tmp_path / "slow", {}, dockerfile)
    assert DOCKER_CLI is not None
    proc = subprocess.Popen(
        [DOCKER_CLI, "build", "-t", "slow:1", str(ctx)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=served.env(),
    )
    try:
        deadline = time.monotonic() + 60
        while not processes_with(f"sleep {seconds}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with(f"sleep {seconds}"), "the step never started"
        proc.kill()  # the client is gone: its connection closes
        proc.wait()
        deadline = time.monotonic() + 30
        while processes_with(f"sleep {seconds}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_with(f"sleep {seconds}") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_with(f"sleep {seconds}"):  # never leave the step behind
            os.kill(pid, signal.SIGKILL)
    report = json.loads(served.pybuild("cache", "verify", "--json").out)
    assert report["clean"], report["findings"]
    assert "slow" not in served.pybuild("images").out
    log = served.log.read_text()
    assert any(
        "/build?" in line and "slow%3A1" in line and " 499 " in line for line in log.splitlines()
    )
    assert "internal error" not in log and "Traceback" not in log
