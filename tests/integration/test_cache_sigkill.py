"""Builds killed with SIGKILL at random moments, in a loop: after each kill the next
build succeeds and `pybuild cache verify` is clean; temp entries the killed builds left
in tmp/ are removed by a later start."""

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

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay, pytest.mark.slow]

ITERATIONS = 8
# Each iteration changes the data and the ARG, so every step really runs and a kill can
# land in any phase: hashing the context, running the sandbox, snapshotting, writing
# blobs, recording, unpacking, tagging.
DOCKERFILE = """FROM busybox
ARG ROUND=0
COPY data.bin /data.bin
RUN echo $ROUND > /round && cp /data.bin /copy.bin
RUN dd if=/dev/urandom of=/noise bs=64k count=16 2>/dev/null
"""


def _start(pybuild: Pybuild, ctx: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "builder.cli", "build", "--progress", "plain", *args]
    return subprocess.Popen(
        [*command, str(ctx)],
        cwd=REPO,
        env={**os.environ, "PYBUILD_ROOT": str(pybuild.root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the kill takes the build and every child it started
    )


def _verify(pybuild: Pybuild, why: str) -> None:
    report = json.loads(pybuild("cache", "verify", "--json").out)
    assert report["clean"], f"{why}: {report['findings']}"


def test_sigkill_at_random_moments_then_build_succeeds_and_store_verifies(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    seed = int(os.environ.get("PYBUILD_SIGKILL_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    ctx = write_context(tmp_path / "ctx", {"data.bin": b""}, DOCKERFILE)
    meta = tmp_path / "meta.json"
    killed_while_running = 0
    for i in range(ITERATIONS):
        (ctx / "data.bin").write_bytes(os.urandom(rng.randrange(1, 3_000_000)))
        proc = _start(pybuild, ctx, "--build-arg", f"ROUND={i}", "-t", "app:killed")
        delay = rng.uniform(0.0, 1.5)
        time.sleep(delay)
        if proc.poll() is None:
            killed_while_running += 1
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        why = f"seed {seed}, iteration {i}, killed after {delay:.2f}s"
        pybuild.build(ctx, "--build-arg", f"ROUND={i}", "-t", "app:ok", "--metadata-file", meta)
        assert len(steps_of(meta)) == 3, why
        _verify(pybuild, why)
        done = pybuild("run", "app:ok", "cat", "/round").out
        assert done.strip() == str(i), why
    assert killed_while_running >= ITERATIONS // 2, f"seed {seed}: most builds ended first"

    time.sleep(2.5)  # past the grace that protects temp entries created an instant ago
    pybuild.build(ctx, "--build-arg", "ROUND=final")
    leftovers = sorted(p.name for p in (pybuild.root / "tmp").iterdir())
    assert leftovers == [], f"seed {seed}: {leftovers}"
    _verify(pybuild, f"seed {seed}, at the end")
