"""The CI files in ci/examples/, read as their CI systems read them: which image a job
runs in, the environment it sets, and the shell it runs (shared by the unit checks of
their security settings and by the job-container test, which runs exactly these).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "ci" / "examples"
GITLAB = EXAMPLES / "gitlab-ci.yml"
GITHUB = EXAMPLES / "github-actions.yml"
KUBERNETES = EXAMPLES / "kubernetes-job.yaml"


@dataclass(frozen=True)
class Step:
    """One shell a CI system starts in the job container, with what it adds to the env."""

    script: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A build job: its container image, environment and shells, as the file says."""

    image: str
    env: dict[str, str]
    steps: tuple[Step, ...]
    entrypoint: tuple[str, ...] = ("sh", "-ec")  # how each step's script is started
    mounts: dict[str, str] = field(default_factory=dict)  # what mounts where: name -> path


def load(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(path.read_text())
    return body


def gitlab_job(name: str = "build-image") -> Job:
    """GitLab runs ``before_script`` and ``script`` as one shell that stops at the first
    failing line; ``variables`` (global, then the job's) are its environment."""
    body = load(GITLAB)
    job = body[name]
    env = {**body.get("variables", {}), **job.get("variables", {})}
    lines = [*job.get("before_script", []), *job["script"]]
    return Job(str(job["image"]), {k: str(v) for k, v in env.items()}, (Step("\n".join(lines)),))


def github_job(name: str = "build") -> Job:
    """A container job: each ``run`` step is ``bash -e`` in the job container (GitHub's
    default shell where bash is found, as in the job image), with the workflow's, the
    job's and the step's ``env``; ``uses`` steps (actions/checkout) are not shell and
    are left to the runner."""
    body = load(GITHUB)
    job = body["jobs"][name]
    env = {**body.get("env", {}), **job.get("env", {})}
    steps = tuple(
        Step(str(step["run"]), {k: str(v) for k, v in step.get("env", {}).items()})
        for step in job["steps"]
        if "run" in step
    )
    container = job["container"]
    env_text = {k: str(v) for k, v in env.items()}
    return Job(str(container["image"]), env_text, steps, entrypoint=("bash", "-ec"))


def kubernetes_pod(body: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = (body or load(KUBERNETES))["spec"]["template"]["spec"]
    return spec


def kubernetes_build(container: str = "build") -> Job:
    """The build container: ``command`` then ``args``, its ``env`` and volume mounts."""
    pod = kubernetes_pod()
    found = [c for c in pod["containers"] if c["name"] == container]
    assert len(found) == 1, f"no container {container!r} in {KUBERNETES}"
    spec = found[0]
    command = [*spec.get("command", []), *spec.get("args", [])]
    assert len(command) == 3, "the test runs `sh -ec SCRIPT`: keep the manifest's that way"
    env = {e["name"]: str(e["value"]) for e in spec.get("env", [])}
    mounts = {m["name"]: m["mountPath"] for m in spec.get("volumeMounts", [])}
    return Job(str(spec["image"]), env, (Step(command[2]),), tuple(command[:2]), mounts)


def kubernetes_checkout_dir() -> str:
    """Where the manifest's checkout init container clones the sources (its last arg)."""
    (init,) = kubernetes_pod()["initContainers"]
    return str(init["args"][-1])
