"""pybuild inside a CI job container: docker's default capabilities and seccomp profile,
no --privileged, no user namespaces (issue 14).

The job image is ci/job-image/Dockerfile, built by pybuild from this checkout on the
Debian base (tests/integration/debian_base.py) and loaded into the real dockerd. Inside
it unshare is refused, so auto falls back to chroot isolation with one line.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_cli import docker
from tests.integration.clihelp import REPO, Pybuild, write_context
from tests.integration.registry_server import HTPASSWD_BIN, MISSING_REASON, run_registry

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_docker]

JOB_TAG = f"pybuild-job:test-{os.getpid()}"  # one per test run: dockerd may be shared
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # a TLS-inspecting proxy's CA
EPOCH = ("--source-date-epoch", "1700000000")
FALLBACK = "namespaces are not permitted here (unshare: EPERM): RUN steps run with --isolation"
APP = """\
FROM busybox AS build
COPY greet.sh /src/greet.sh
RUN echo "built in stage one" > /src/made.txt && chmod 0755 /src/greet.sh
FROM busybox
RUN echo "app:x:1000:1000::/home/app:/bin/sh" >> /etc/passwd && echo "app:x:1000:" >> /etc/group
COPY --from=build /src /app
WORKDIR /app
USER app
RUN id -u > /app/uid.txt 2>/dev/null || id -u > /tmp/uid.txt
CMD ["/app/greet.sh"]
"""
GREET = '#!/bin/sh\necho "hello from the job, $(cat /app/made.txt), uid $(id -u)"\n'


@pytest.fixture(scope="module")
def job_image(tmp_path_factory: pytest.TempPathFactory, debian_archive: Path) -> Iterator[str]:
    """ci/job-image/Dockerfile built by pybuild and loaded into dockerd."""
    tmp = tmp_path_factory.mktemp("job-image")
    store = Pybuild(tmp / "store")
    store("load", "-i", debian_archive)
    archive = tmp / "job.tar"
    secret = ("--secret", f"id=pip-cert,src={CA_BUNDLE}") if CA_BUNDLE.is_file() else ()
    store.build(
        REPO, "-f", REPO / "ci/job-image/Dockerfile", *secret,
        "-t", JOB_TAG, "-o", f"type=docker,dest={archive}",
    )  # fmt: skip
    subprocess.run([docker(), "load", "-i", str(archive)], check=True, capture_output=True)
    yield JOB_TAG
    subprocess.run([docker(), "rmi", "-f", JOB_TAG], capture_output=True, check=False)


def _job(
    image: str,
    script: str,
    *,
    mounts: dict[Path, str],
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm`` with docker's defaults (no --privileged, no --cap-add, the
    default seccomp profile); the host's network only because dockerd has no bridge."""
    command = [docker(), "run", "--rm", "--network", "host"]
    for source, target in mounts.items():
        command += ["-v", f"{source}:{target}"]
    if user is not None:
        command += ["--user", user]
    for key, value in (env or {}).items():
        command += ["-e", f"{key}={value}"]
    command += [image, "sh", "-c", script]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_job_container_builds_copy_user_run_multistage_and_the_image_runs(
    job_image: str, base_archive: Path, tmp_path: Path, store_root: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"greet.sh": GREET}, APP)
    out = tmp_path / "out"
    out.mkdir()
    done = _job(
        job_image,
        "pybuild load -i /base.tar && pybuild build --progress plain -t app:1 "
        "-o type=oci,dest=/out/app.tar --metadata-file /out/meta.json /ctx",
        mounts={base_archive: "/base.tar:ro", ctx: "/ctx:ro", out: "/out"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(FALLBACK) == 1
    assert "which does not isolate PIDs, network, mounts and hostname" in done.stderr
    steps = json.loads((out / "meta.json").read_text())["steps"]
    assert len(steps) == 6 and not any(s["cached"] for s in steps)
    # Outside the job: the exported image loads and runs in the namespace sandbox.
    host = Pybuild(store_root)
    host("load", "-i", out / "app.tar")
    run = host("run", "--rm", "app:1")
    assert run.out.strip() == "hello from the job, built in stage one, uid 1000"
    assert host("run", "--rm", "app:1", "cat", "/tmp/uid.txt").out.strip() == "1000"


def test_copy_and_workdir_image_from_the_job_has_the_hosts_digest(
    job_image: str, pybuild: Pybuild, base_archive: Path, tmp_path: Path
) -> None:
    dockerfile = "FROM busybox\nCOPY a.txt /app/\nWORKDIR /app/data\nCOPY a.txt b.txt ./\n"
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a\n", "b.txt": "b\n"}, dockerfile)
    out = tmp_path / "out"
    out.mkdir()
    epoch = "--source-date-epoch 1700000000"
    done = _job(
        job_image,
        f"pybuild load -i /base.tar && pybuild build -q {epoch} --metadata-file /out/m.json /ctx",
        mounts={base_archive: "/base.tar:ro", ctx: "/ctx:ro", out: "/out"},
    )
    assert done.returncode == 0, done.stderr
    pybuild.build(
        ctx, *epoch.split(), "--isolation", "namespaces", "--metadata-file", tmp_path / "h"
    )
    job, host = (json.loads(p.read_text()) for p in (out / "m.json", tmp_path / "h"))
    assert [s["key"] for s in job["steps"]] == [s["key"] for s in host["steps"]]
    assert job["containerimage.config.digest"] == host["containerimage.config.digest"]
    assert job["containerimage.digest"] == host["containerimage.digest"]


def test_non_root_job_gets_the_missing_capability_and_both_ways_out(
    job_image: str, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN true\n")
    done = _job(job_image, "pybuild build -t app:1 /ctx", mounts={ctx: "/ctx:ro"}, user="1000:1000")
    assert done.returncode not in (0, 70), done.stderr  # 70: an internal error
    assert "error: cannot run RUN steps: namespaces are refused here (unshare: EPERM)" in (
        done.stderr
    )
    assert "CAP_SYS_CHROOT" in done.stderr and "(uid 1000)" in done.stderr
    assert "run the job as root in its container" in done.stderr
    assert "allow user namespaces" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_store_on_the_containers_overlay_root_records_deletions_as_the_host_does(
    job_image: str, pybuild: Pybuild, tmp_path: Path
) -> None:
    # The base has a whiteout (.wh.group); the step deletes another file. The store is
    # on the job container's own overlayfs root, which refuses 0/0 char devices.
    base_ctx = write_context(tmp_path / "base", {}, "FROM busybox\nRUN rm /etc/group\n")
    base = tmp_path / "w.tar"
    pybuild.build(base_ctx, *EPOCH, "-t", "wbase:1", "-o", f"type=docker,dest={base}")
    dockerfile = "FROM wbase:1\nRUN test ! -e /etc/group && rm /etc/passwd\n"
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    out = tmp_path / "out"
    out.mkdir()
    done = _job(
        job_image,
        "export PYBUILD_ROOT=/root/store; findmnt -no FSTYPE / > /out/fstype; "
        "pybuild load -i /w.tar >/dev/null && pybuild build --progress plain "
        f"{' '.join(EPOCH)} --metadata-file /out/m.json /ctx",
        mounts={base: "/w.tar:ro", ctx: "/ctx:ro", out: "/out"},
    )
    assert done.returncode == 0, done.stderr
    assert (out / "fstype").read_text().strip() == "overlay"
    host = Pybuild(tmp_path / "host")  # the same base, loaded as the job loaded it
    host("load", "-i", base)
    host.build(ctx, *EPOCH, "--isolation", "namespaces", "--metadata-file", tmp_path / "h")
    job, ns = (json.loads(p.read_text()) for p in (out / "m.json", tmp_path / "h"))
    assert job["containerimage.digest"] == ns["containerimage.digest"]


@pytest.mark.skipif(
    shutil.which("docker-registry") is None or HTPASSWD_BIN is None, reason=MISSING_REASON
)
def test_job_pushes_with_docker_config_credentials_and_a_second_job_hits_the_registry_cache(
    job_image: str, base_archive: Path, tmp_path: Path, store_root: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"greet.sh": GREET}, APP)
    out = tmp_path / "out"
    out.mkdir()
    config = tmp_path / "docker-config"  # as a CI system mounts a registry login
    config.mkdir()
    with run_registry(tmp_path / "registry", user="ci", password="s3cret") as reg:
        auth = base64.b64encode(b"ci:s3cret").decode()
        (config / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
        image, cache = f"{reg.host}/team/app:1", f"{reg.host}/team/app:buildcache"
        mounts = {base_archive: "/base.tar:ro", ctx: "/ctx:ro", out: "/out", config: "/dc:ro"}
        build = f"pybuild load -i /base.tar >/dev/null && pybuild build --progress plain -t {image}"
        first = _job(
            job_image,
            f"{build} --push --cache-to type=registry,ref={cache},mode=max "
            "--metadata-file /out/first.json /ctx",
            mounts=mounts,
            env={"DOCKER_CONFIG": "/dc"},
        )
        assert first.returncode == 0, first.stderr
        second = _job(  # a new container: an empty store on a new volume
            job_image,
            f"{build} --cache-from type=registry,ref={cache} --metadata-file /out/second.json /ctx",
            mounts=mounts,
            env={"DOCKER_CONFIG": "/dc"},
        )
        assert second.returncode == 0, second.stderr
        host = Pybuild(store_root)
        env = {"DOCKER_CONFIG": str(config)}
        host("pull", image, env=env)
        run = host("run", "--rm", image, env=env)
    assert run.out.strip() == "hello from the job, built in stage one, uid 1000"
    one, two = (json.loads((out / f"{n}.json").read_text()) for n in ("first", "second"))
    assert all(step["cached"] for step in two["steps"]) and "100%" in second.stderr
    assert two["containerimage.digest"] == one["containerimage.digest"]


@pytest.mark.slow  # ~45 s: a Debian root is copied for every step (the copy snapshotter)
def test_job_installs_with_apt_get_and_pip_over_the_network(
    job_image: str, debian_archive: Path, tmp_path: Path
) -> None:
    dockerfile = """\
FROM debian-py:bookworm
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends jq >/dev/null
COPY ca.crt /tmp/ca.crt
RUN pip install -q --break-system-packages --no-cache-dir --cert /tmp/ca.crt six
RUN jq --version && python3 -c "import six; print('six', six.__version__)"
"""
    ca = CA_BUNDLE.read_bytes() if CA_BUNDLE.is_file() else b""
    ctx = write_context(tmp_path / "ctx", {"ca.crt": ca}, dockerfile)
    done = _job(
        job_image,
        "pybuild load -i /base.tar >/dev/null && pybuild build --progress plain /ctx",
        mounts={debian_archive: "/base.tar:ro", ctx: "/ctx:ro"},
    )
    assert done.returncode == 0, done.stderr
    assert " jq-1." in done.stderr and " six 1." in done.stderr


def test_pybuild_run_in_the_job_says_it_needs_namespaces(
    job_image: str, base_archive: Path
) -> None:
    done = _job(
        job_image,
        "pybuild load -i /base.tar >/dev/null && pybuild run --rm busybox true",
        mounts={base_archive: "/base.tar:ro"},
    )
    assert done.returncode not in (0, 70)
    assert "unshare (flags=0x20000): Operation not permitted (EPERM)" in done.stderr
    assert "running a container (`pybuild run`) needs namespaces" in done.stderr
    assert "Traceback" not in done.stderr
