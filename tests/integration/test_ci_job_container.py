"""pybuild inside a CI job container: docker's default capabilities and seccomp profile,
no --privileged, no user namespaces.

The job image is ci/job-image/Dockerfile, built by pybuild from this checkout on the
Debian base (tests/integration/debian_base.py) once for the module and loaded into the
real dockerd. Inside it unshare is refused, so auto falls back to chroot isolation with
one line. The CI files in ci/examples/ are run as their CI systems run them
(tests/ci_examples.py), with only the registry address, the image names, the login and
the job image put in through the variables the files themselves use: GitLab's job builds
an app (apt-get and pip over the network, COPY, USER, COPY --from) and pushes it with
its cache to a docker-registry on loopback; GitHub's and Kubernetes' jobs then build it
with empty stores from that cache.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import ci_examples
from tests.docker_cli import docker
from tests.integration.clihelp import REPO, Pybuild, write_context
from tests.integration.registry_server import (
    HTPASSWD_BIN,
    MISSING_REASON,
    Registry,
    run_registry,
)

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_docker]

JOB_TAG = f"pybuild-job:test-{os.getpid()}"  # one per test run: dockerd may be shared
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # a TLS-inspecting proxy's CA
EPOCH = ("--source-date-epoch", "1700000000")
FALLBACK = "namespaces are not permitted here (unshare: EPERM): RUN steps run with --isolation"
USER, PASSWORD = "ci", "s3cret"
# The app the CI jobs build: apt-get and pip over the network, COPY, USER and a
# multi-stage COPY --from, on the Debian base pulled from the job's registry.
APP = """\
FROM {base} AS build
COPY ca.crt /tmp/ca.crt
RUN if [ -s /tmp/ca.crt ]; then export PIP_CERT=/tmp/ca.crt; fi; \\
    pip install -q --no-cache-dir --break-system-packages --target /opt/app/lib six
COPY greet.py /opt/app/
FROM {base}
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends jq >/dev/null \\
    && rm -rf /var/lib/apt/lists/* && useradd -u 1000 -m app
COPY --from=build /opt/app /app
USER app
CMD ["python3", "/app/greet.py"]
"""
GREET = """\
import os, subprocess, sys
sys.path.insert(0, "/app/lib")
import six
jq = subprocess.run(["jq", "--version"], capture_output=True, text=True).stdout.strip()
print(f"hello from the job: six {six.__version__}, {jq}, uid {os.getuid()}")
"""
GREETING = re.compile(r"hello from the job: six 1\.\d+\.\d+, jq-1\.\d+, uid 1000")


@pytest.fixture(scope="module")
def debian_store(tmp_path_factory: pytest.TempPathFactory, debian_archive: Path) -> Pybuild:
    """A host store with the Debian base (debian-py:bookworm) loaded."""
    store = Pybuild(tmp_path_factory.mktemp("debian-store"))
    store("load", "-i", debian_archive)
    return store


@pytest.fixture(scope="module")
def job_image(tmp_path_factory: pytest.TempPathFactory, debian_store: Pybuild) -> Iterator[str]:
    """ci/job-image/Dockerfile built by pybuild and loaded into dockerd."""
    tmp = tmp_path_factory.mktemp("job-image")
    store = debian_store
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
    mounts: Mapping[Path, str],
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    entrypoint: tuple[str, ...] = ("sh", "-c"),
    workdir: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm`` with docker's defaults (no --privileged, no --cap-add, the
    default seccomp profile); the host's network only because dockerd has no bridge."""
    command = [*_run_flags(mounts, env, workdir), "--rm", "--entrypoint", entrypoint[0]]
    if user is not None:
        command += ["--user", user]
    command += [image, *entrypoint[1:], script]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def _run_flags(
    mounts: Mapping[Path, str], env: Mapping[str, str] | None, workdir: str | None
) -> list[str]:
    command = [docker(), "run", "--network", "host"]
    for source, target in mounts.items():
        command += ["-v", f"{source}:{target}"]
    for key, value in (env or {}).items():
        command += ["-e", f"{key}={value}"]
    if workdir is not None:
        command += ["-w", workdir]
    return command


@dataclass(frozen=True)
class CiRuns:
    """The three CI files' jobs, run one after the other against one registry."""

    registry: Registry
    docker_config: Path
    gitlab: subprocess.CompletedProcess[str]
    github: list[subprocess.CompletedProcess[str]]
    kubernetes: subprocess.CompletedProcess[str]
    digests: dict[str, str]  # job -> the manifest digest it pushed
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def ci_runs(
    job_image: str, debian_store: Pybuild, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CiRuns]:
    if shutil.which("docker-registry") is None or HTPASSWD_BIN is None:
        pytest.skip(MISSING_REASON)
    tmp = tmp_path_factory.mktemp("ci-runs")
    config = tmp / "docker-config"  # the registry login, as a CI system mounts it
    config.mkdir()
    with run_registry(tmp / "registry", user=USER, password=PASSWORD) as reg:
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
        base = f"{reg.host}/library/debian-py:bookworm"
        debian_store("tag", "debian-py:bookworm", base)
        debian_store("push", base, env={"DOCKER_CONFIG": str(config)})
        ca = CA_BUNDLE.read_bytes() if CA_BUNDLE.is_file() else b""
        ctx = write_context(tmp / "ctx", {"ca.crt": ca, "greet.py": GREET}, APP.format(base=base))
        seconds: dict[str, float] = {}
        started = time.monotonic()
        gitlab = _run_gitlab(job_image, reg, ctx)
        seconds["gitlab"] = time.monotonic() - started
        # Two more jobs at once, as two pipelines would: each from the registry cache.
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            github_run = pool.submit(_run_github, job_image, reg, ctx)
            kubernetes_run = pool.submit(_run_kubernetes, job_image, reg, ctx, config)
            github, kubernetes = github_run.result(), kubernetes_run.result()
        seconds["github and kubernetes"] = time.monotonic() - started
        digests = {
            job: _manifest_digest(reg, "team/app", tag)
            for job, tag in (("gitlab", "gitlab1"), ("github", "github1"), ("kubernetes", "k8s1"))
        }
        yield CiRuns(reg, config, gitlab, github, kubernetes, digests, seconds)


def _run_gitlab(image: str, reg: Registry, ctx: Path) -> subprocess.CompletedProcess[str]:
    """The job's script in one ``sh -e``, with its variables and GitLab's predefined ones."""
    job = ci_examples.gitlab_job()
    assert job.image == "$PYBUILD_JOB_IMAGE" and "PYBUILD_JOB_IMAGE" in job.env
    project = "/builds/team/app"
    env = {
        **job.env,
        "PYBUILD_JOB_IMAGE": image,
        "CI_REGISTRY": reg.host,
        "CI_REGISTRY_USER": USER,
        "CI_REGISTRY_PASSWORD": PASSWORD,
        "CI_REGISTRY_IMAGE": f"{reg.host}/team/app",
        "CI_COMMIT_SHORT_SHA": "gitlab1",
        "CI_PROJECT_DIR": project,
    }
    (step,) = job.steps
    return _job(
        env["PYBUILD_JOB_IMAGE"], step.script, mounts={ctx: f"{project}:ro"}, env=env,
        entrypoint=job.entrypoint, workdir=project,
    )  # fmt: skip


def _run_github(image: str, reg: Registry, ctx: Path) -> list[subprocess.CompletedProcess[str]]:
    """Each ``run`` step as ``docker exec ... sh -e -c`` in one job container (how the
    runner runs container jobs), the checkout in the workspace."""
    job = ci_examples.github_job()
    ours = {
        "REGISTRY": reg.host,
        "IMAGE": f"{reg.host}/team/app:github1",
        "CACHE": f"{reg.host}/team/app:buildcache",
        "REGISTRY_USER": USER,
        "REGISTRY_PASSWORD": PASSWORD,
    }
    named = set(job.env).union(*(step.env for step in job.steps))
    assert set(ours) <= named, f"the workflow no longer sets {set(ours) - named}"
    workspace = "/__w/app/app"
    start = [*_run_flags({ctx: f"{workspace}:ro"}, None, workspace), "-d"]
    container = subprocess.run(
        [*start, "--entrypoint", "tail", image, "-f", "/dev/null"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    done = []
    try:
        for step in job.steps:
            env = {**job.env, **step.env}
            env.update({k: v for k, v in ours.items() if k in env})
            assert not [v for v in env.values() if "${{" in v], env
            flags = [f"--env={k}={v}" for k, v in env.items()]
            command = [docker(), "exec", *flags, container, *job.entrypoint, step.script]
            ran = subprocess.run(command, capture_output=True, text=True, timeout=600)
            done.append(ran)
            if ran.returncode != 0:
                break
    finally:
        subprocess.run([docker(), "rm", "-f", container], capture_output=True, check=False)
    return done


def _run_kubernetes(
    image: str, reg: Registry, ctx: Path, config: Path
) -> subprocess.CompletedProcess[str]:
    """The build container's command and args, its env, the docker config secret and the
    checkout at their mount paths (no cluster here: the init container's clone is the
    context mounted where it clones to)."""
    job = ci_examples.kubernetes_build()
    ours = {"IMAGE": f"{reg.host}/team/app:k8s1", "CACHE": f"{reg.host}/team/app:buildcache"}
    assert set(ours) <= set(job.env)
    env = {**job.env, **ours}
    mounts = {ctx: f"{ci_examples.kubernetes_checkout_dir()}:ro"}
    mounts[config] = f"{job.mounts['docker-config']}:ro"
    (step,) = job.steps
    return _job(image, step.script, mounts=mounts, env=env, entrypoint=job.entrypoint)


def _manifest_digest(reg: Registry, repo: str, tag: str) -> str:
    """The digest the registry has for ``repo:tag``, or why it has none."""
    request = urllib.request.Request(
        f"http://{reg.host}/v2/{repo}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json",
            "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(response.headers["Docker-Content-Digest"])
    except urllib.error.HTTPError as exc:
        return f"(not pushed: HTTP {exc.code})"


def test_the_gitlab_job_builds_apt_pip_copy_user_and_multistage_and_pushes(
    ci_runs: CiRuns,
) -> None:
    done = ci_runs.gitlab
    assert done.returncode == 0, done.stderr
    assert "Login Succeeded" in done.stdout
    assert done.stderr.count(FALLBACK) == 1
    assert "which does not isolate PIDs, network, mounts and hostname" in done.stderr
    summary = re.search(r"(\d+)/(\d+) steps cached", done.stderr)
    assert summary is not None and summary[1] == "0", done.stderr[-2000:]
    assert "no cache there yet" in done.stderr  # the first job: --cache-from is empty


def test_github_and_kubernetes_jobs_with_empty_stores_hit_the_registry_cache_fully(
    ci_runs: CiRuns,
) -> None:
    for done in [*ci_runs.github, ci_runs.kubernetes]:
        assert done.returncode == 0, done.stderr
    assert len(ci_runs.github) == 2 and "Login Succeeded" in ci_runs.github[0].stdout
    for done in (ci_runs.github[-1], ci_runs.kubernetes):
        assert "steps cached (100%)" in done.stderr, done.stderr[-2000:]
    assert len(set(ci_runs.digests.values())) == 1, ci_runs.digests


def test_the_pushed_image_pulls_and_runs_outside_the_job(ci_runs: CiRuns, store_root: Path) -> None:
    image = f"{ci_runs.registry.host}/team/app:gitlab1"
    host = Pybuild(store_root)
    env = {"DOCKER_CONFIG": str(ci_runs.docker_config)}
    host("pull", image, env=env)
    run = host("run", "--rm", image, env=env)
    assert GREETING.fullmatch(run.out.strip()), run.out
    print(f"CI job seconds: {ci_runs.seconds}")


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


def test_a_job_step_has_no_proc_without_cap_sys_admin(job_image: str, base_archive: Path) -> None:
    done = _job(
        job_image,
        "pybuild load -i /base.tar >/dev/null && printf 'FROM busybox\\nRUN test ! -e "
        "/proc/self && echo no-proc-here\\n' > /tmp/Dockerfile && pybuild build "
        "--progress plain /tmp",
        mounts={base_archive: "/base.tar:ro"},
    )
    assert done.returncode == 0, done.stderr
    assert "no-proc-here" in done.stderr
    assert "without CAP_SYS_ADMIN mounts no /proc or /sys" in done.stderr


def test_pybuild_run_in_the_job_says_it_needs_namespaces(
    job_image: str, base_archive: Path
) -> None:
    done = _job(
        job_image,
        "pybuild load -i /base.tar >/dev/null && pybuild run --rm busybox true",
        mounts={base_archive: "/base.tar:ro"},
    )
    assert done.returncode not in (0, 70)
    assert "error: cannot run a container here: namespaces are not permitted (unshare: EPERM)" in (
        done.stderr
    )
    assert "`pybuild run` has no --isolation chroot" in done.stderr
    assert "build and push or export the image with `pybuild build`" in done.stderr
    assert "Traceback" not in done.stderr
