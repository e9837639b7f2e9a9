"""The stage DAG: independent stages overlap in time, a stage's steps wait only for the
stages they read, identical steps run once per build.

Overlap is read from the build records (``--metadata-file``: each step's start and end),
never from a threshold on total build time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

TWO_BRANCHES = """\
FROM busybox AS left
RUN sleep 1.5 && echo left > /left
FROM busybox AS right
RUN sleep 1.5 && echo right > /right
FROM busybox
COPY --from=left /left /left
COPY --from=right /right /right
"""

READS_LATE = """\
FROM busybox AS slow
RUN sleep 1.5 && echo slow > /slow
FROM busybox
RUN echo early > /early
COPY --from=slow /slow /slow
"""

SAME_STEP_TWICE = """\
FROM busybox AS one
RUN echo shared > /shared
RUN echo one > /one
FROM busybox AS two
RUN echo shared > /shared
RUN echo two > /two
FROM busybox
COPY --from=one /one /one
COPY --from=two /two /two
COPY --from=two /shared /shared
"""


def _steps(meta: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads(meta.read_text())
    return {s["instruction"]: s for s in doc["steps"]}


def _build(pybuild: Pybuild, tmp_path: Path, dockerfile: str, *flags: str) -> dict[str, Any]:
    context = write_context(tmp_path / "ctx", {}, dockerfile)
    meta = tmp_path / "meta.json"
    pybuild.build(context, "--metadata-file", meta, *flags)
    doc: dict[str, Any] = json.loads(meta.read_text())
    return doc


def test_independent_stages_run_their_steps_at_the_same_time(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    doc = _build(pybuild, tmp_path, TWO_BRANCHES, "--jobs", "2")
    runs = [s for s in doc["steps"] if s["instruction"].startswith("RUN")]
    assert len(runs) == 2 and not any(s["cached"] for s in runs)
    left, right = runs
    # Two intervals overlap when each starts before the other ends.
    assert left["started"] < right["finished"] and right["started"] < left["finished"], runs


def test_jobs_one_runs_independent_stages_one_after_the_other(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    doc = _build(pybuild, tmp_path, TWO_BRANCHES, "--jobs", "1")
    left, right = sorted(
        (s for s in doc["steps"] if s["instruction"].startswith("RUN")),
        key=lambda s: s["started"],
    )
    assert left["finished"] <= right["started"], (left, right)


def test_steps_before_a_copy_from_run_while_the_stage_it_reads_builds(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    doc = _build(pybuild, tmp_path, READS_LATE, "--jobs", "2")
    steps = {s["instruction"]: s for s in doc["steps"]}
    slow = steps["RUN sleep 1.5 && echo slow > /slow"]
    early = steps["RUN echo early > /early"]
    copy = steps["COPY --from=slow /slow /slow"]
    assert early["started"] < slow["finished"], (early, slow)
    assert copy["started"] >= slow["finished"], (copy, slow)


@pytest.mark.parametrize("flags", [(), ("--no-cache",)], ids=["fresh-store", "no-cache"])
def test_identical_steps_in_two_stages_run_once(
    pybuild: Pybuild, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    if flags:  # fill the cache first, so --no-cache has something to ignore
        _build(pybuild, tmp_path / "first", SAME_STEP_TWICE)
    doc = _build(pybuild, tmp_path, SAME_STEP_TWICE, *flags)
    shared = [s for s in doc["steps"] if s["instruction"] == "RUN echo shared > /shared"]
    assert len(shared) == 2
    assert shared[0]["key"] == shared[1]["key"]
    assert sorted(s["cached"] for s in shared) == [False, True]
    # one sandbox for the shared step, one each for /one and /two
    assert doc["totals"]["sandbox_runs"] == 3
