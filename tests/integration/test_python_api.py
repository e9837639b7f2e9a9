"""Building from Python: the README's example runs as written, and ``builder.build``
alone (no CLI) stores the image and reports its steps and hit rate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from builder.images.store import Storage
from cache.digest import Digest
from tests.integration.clihelp import REPO, Pybuild

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _python(code: str, root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (a build enters namespaces for its process)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYBUILD_ROOT": str(root)},
        timeout=300,
        check=False,
    )


def _readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Use it from Python", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the section has no python code block"
    return found.group(1)


def test_the_readme_example_builds_and_prints_digest_and_hit_rate(
    pybuild: Pybuild, store_root: Path
) -> None:
    done = _python(_readme_example(), store_root)
    assert done.returncode == 0, done.stderr
    digest, rate = done.stdout.splitlines()
    assert Digest.parse(digest)
    assert re.fullmatch(r"\d+% of \d+ steps cached", rate), rate
    with Storage.open(store_root) as storage:
        image = storage.get_image("hello:py")
    assert str(image.digest) == digest


_API_BUILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import builder

    class Seen:
        def __init__(self):
            self.finished = []

        def step_started(self, stage, step):
            pass

        def step_log(self, step, line):
            pass

        def step_finished(self, stage, step, result):
            self.finished.append(result.cached)

    root = Path(sys.argv[1])
    request = builder.BuildRequest(context=Path("fixtures/hello"), tags=("api:1",))
    runs = []
    for _ in range(2):
        seen = Seen()
        outcome = builder.build(request, root=root, events=seen)
        runs.append(
            {
                "digest": str(outcome.image.digest),
                "hit_rate": outcome.hit_rate,
                "steps": len(outcome.steps),
                "seen": seen.finished,
            }
        )
    print(json.dumps(runs))
    """
)


def test_a_build_through_the_api_is_stored_and_fully_cached_on_rebuild(
    pybuild: Pybuild, store_root: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _API_BUILD, str(store_root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and not done.stderr  # the API prints nothing
    first, second = json.loads(done.stdout)
    assert first["hit_rate"] < 1.0 and second["hit_rate"] == 1.0
    assert first["digest"] == second["digest"]
    assert len(first["seen"]) == first["steps"] and all(second["seen"])
    with Storage.open(store_root) as storage:
        image = storage.get_image("api:1")
        assert storage.blobs.has(image.digest)
    assert str(image.digest) == first["digest"]
