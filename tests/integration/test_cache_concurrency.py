"""Many pybuild processes on one store, and builds killed with SIGKILL mid-way."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, steps_of, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _start(pybuild: Pybuild, ctx: Path, *args: str | Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYBUILD_ROOT": str(pybuild.root)}
    command = [sys.executable, "-m", "builder.cli", "build", "--progress", "plain"]
    return subprocess.Popen(
        [*command, *map(str, args), str(ctx)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a test can kill the build with all its children
    )


def _verify_clean(pybuild: Pybuild) -> None:
    report = json.loads(pybuild("cache", "verify", "--json").out)
    assert report["clean"], report["findings"]


def test_six_concurrent_builds_run_each_step_once_and_leave_a_clean_store(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    same = write_context(
        tmp_path / "same",
        {"a.txt": "a"},
        "FROM busybox\nCOPY a.txt /a.txt\nRUN sleep 1 && date +%s%N > /stamp\n",
    )
    contexts = [same] * 3 + [
        write_context(tmp_path / f"other{i}", {}, f"FROM busybox\nRUN echo {i} > /n\n")
        for i in range(3)
    ]
    metas = [tmp_path / f"meta{i}.json" for i in range(6)]
    procs = [
        _start(pybuild, ctx, "--metadata-file", meta)
        for ctx, meta in zip(contexts, metas, strict=True)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    same_steps = [steps_of(meta) for meta in metas[:3]]
    for position in range(2):
        misses = [steps[position]["cached"] for steps in same_steps].count(False)
        assert misses == 1, same_steps  # the other two waited for it and reused it
    layers = {steps[1]["layer"] for steps in same_steps}
    assert len(layers) == 1
    _verify_clean(pybuild)


def test_builds_killed_at_random_moments_leave_a_usable_store(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    rng = random.Random(4)
    for i in range(5):
        ctx = write_context(
            tmp_path / f"ctx{i}",
            {"data.bin": os.urandom(200_000)},
            f"FROM busybox\nCOPY data.bin /d\nRUN sleep 0.2 && echo {i} > /i\n"
            "RUN cp /d /d2 && sleep 0.2\n",
        )
        proc = _start(pybuild, ctx)
        time.sleep(rng.uniform(0.3, 2.0))
        with contextlib.suppress(ProcessLookupError):  # it may have finished first
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    time.sleep(2.5)  # past the grace that protects just-created temp entries
    ctx = tmp_path / "ctx4"
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--metadata-file", meta)
    assert len(steps_of(meta)) == 3
    leftovers = [p.name for p in (pybuild.root / "tmp").iterdir()]
    assert leftovers == [], leftovers
    _verify_clean(pybuild)
    assert pybuild.build(ctx).code == 0


def _blocked_on_flock(pid: int) -> bool:
    """True while ``pid`` waits for an flock (a "->" line in /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[2] == "FLOCK" and fields[5] == str(pid):
            return True
    return False


def _waits_for_prune(pybuild: Pybuild, *args: str | Path) -> None:
    """Start `pybuild ARGS` while a prune holds the store; it must wait, then succeed."""
    from cache.gclock import exclusive_guard

    env = {**os.environ, "PYBUILD_ROOT": str(pybuild.root)}
    command = [sys.executable, "-m", "builder.cli", *map(str, args)]
    with exclusive_guard(pybuild.root):  # what `pybuild cache prune` holds while it sweeps
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        while not _blocked_on_flock(proc.pid):
            assert proc.poll() is None, f"{args} ran during a prune: {proc.communicate()}"
            time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_load_waits_for_a_running_prune(pybuild: Pybuild, base_archive: Path) -> None:
    pybuild("rmi", "busybox")
    _waits_for_prune(pybuild, "load", "-i", base_archive)
    assert pybuild("run", "busybox", "true").code == 0
    _verify_clean(pybuild)


def test_run_waits_for_a_running_prune(pybuild: Pybuild) -> None:
    _waits_for_prune(pybuild, "run", "busybox", "true")


def test_prune_keeps_what_a_running_container_of_an_untagged_image_uses(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"f": "payload"}, "FROM busybox\nCOPY f /f\n")
    image_id = pybuild.inspect(pybuild.build(ctx, "-q").out.strip())["Id"]
    pybuild("tag", image_id, "gone:1")
    pybuild("rmi", "gone:1")  # nothing tags it now: a prune may take all of its layers
    env = {**os.environ, "PYBUILD_ROOT": str(pybuild.root)}
    command = [sys.executable, "-m", "builder.cli", "run", image_id, "sh", "-c", "sleep 2; cat /f"]
    run = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(1)  # the container is up
    pybuild("cache", "prune", "--all")
    out, _ = run.communicate(timeout=60)
    assert (run.returncode, out) == (0, "payload")
    _verify_clean(pybuild)
