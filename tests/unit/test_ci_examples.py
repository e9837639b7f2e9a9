"""ci/examples/: what no CI system is here to check. The jobs ask for no privilege beyond
the defaults (the Kubernetes pod: a default securityContext), and the three build the
same way (tests/integration/test_ci_job_container.py runs their commands)."""

from __future__ import annotations

from typing import Any

from tests import ci_examples

# Pod and container fields that would give the build more than a default pod has.
PRIVILEGED_POD_FIELDS = ("hostPID", "hostIPC", "hostNetwork", "hostUsers")
PRIVILEGED_CONTAINER_FIELDS = ("privileged", "allowPrivilegeEscalation", "procMount")


def _security_problems(pod: dict[str, Any]) -> list[str]:
    problems = [f"pod sets {name}" for name in PRIVILEGED_POD_FIELDS if name in pod]
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        context = container.get("securityContext", {})
        name = container["name"]
        problems += [f"{name} sets {f}" for f in PRIVILEGED_CONTAINER_FIELDS if f in context]
        if context.get("capabilities", {}).get("add"):
            problems.append(f"{name} adds capabilities")
        if context.get("seccompProfile", {}).get("type") == "Unconfined":
            problems.append(f"{name} runs without seccomp")
        if context.get("appArmorProfile", {}).get("type") == "Unconfined":
            problems.append(f"{name} runs without AppArmor")
    seccomp = pod.get("securityContext", {}).get("seccompProfile", {})
    if seccomp.get("type") == "Unconfined":
        problems.append("pod runs without seccomp")
    return problems


def test_the_kubernetes_job_runs_in_a_pod_with_the_default_security_context() -> None:
    body = ci_examples.load(ci_examples.KUBERNETES)
    assert body["kind"] == "Job" and body["apiVersion"] == "batch/v1"
    assert _security_problems(ci_examples.kubernetes_pod(body)) == []


def test_the_security_check_sees_a_privileged_pod() -> None:
    pod = {
        "hostPID": True,
        "containers": [
            {"name": "b", "securityContext": {"privileged": True}},
            {"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
        ],
    }
    assert _security_problems(pod) == [
        "pod sets hostPID",
        "b sets privileged",
        "c adds capabilities",
    ]


def test_the_kubernetes_job_pushes_with_a_mounted_docker_config_secret() -> None:
    build = ci_examples.kubernetes_build()
    pod = ci_examples.kubernetes_pod()
    secret_volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    (name,) = secret_volumes
    assert {"key": ".dockerconfigjson", "path": "config.json"} in secret_volumes[name]["items"]
    assert build.env["DOCKER_CONFIG"] == build.mounts[name]
    assert "--push" in build.steps[0].script


def test_the_github_container_job_asks_for_no_privileges() -> None:
    job = ci_examples.load(ci_examples.GITHUB)["jobs"]["build"]
    options = str(job["container"].get("options", ""))
    assert "--privileged" not in options and "--cap-add" not in options


def test_the_gitlab_job_needs_no_docker_service_or_privileged_runner() -> None:
    job = ci_examples.load(ci_examples.GITLAB)["build-image"]
    assert "services" not in job  # no docker:dind


def test_every_example_builds_with_the_registry_cache_both_ways_and_pushes() -> None:
    jobs = (ci_examples.gitlab_job(), ci_examples.github_job(), ci_examples.kubernetes_build())
    for job in jobs:
        build = job.steps[-1].script.splitlines()[-1]
        assert build.startswith("pybuild build --progress plain -t ")
        assert "--push" in build and "--cache-from " in build and "--cache-to " in build
        assert ",mode=max" in build


def test_the_readme_shows_each_example_verbatim() -> None:
    readme = (ci_examples.EXAMPLES.parents[1] / "README.md").read_text()
    for path in (ci_examples.GITLAB, ci_examples.GITHUB, ci_examples.KUBERNETES):
        assert f"```yaml\n{path.read_text()}```\n" in readme, f"{path.name} differs in README"
