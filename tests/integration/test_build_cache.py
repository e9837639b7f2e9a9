"""The cache through the CLI: no-change rebuilds run nothing, edits re-run only what follows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, steps_of, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def hello_copy(tmp_path: Path) -> Path:
    ctx = tmp_path / "hello"
    shutil.copytree(REPO / "fixtures" / "hello", ctx)
    return ctx


def test_no_change_rebuild_is_fully_cached_and_starts_no_sandbox(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = hello_copy(tmp_path)
    meta = tmp_path / "meta.json"
    first = pybuild.build(ctx, "-t", "hello:1", "--metadata-file", meta)
    assert "steps cached" in first.err
    second = pybuild.build(ctx, "-t", "hello:1", "--metadata-file", meta)
    steps = steps_of(meta)
    assert steps and all(s["cached"] for s in steps)
    assert "100%" in second.err
    assert "CACHED" in second.err
    import json

    assert json.loads(meta.read_text())["totals"]["sandbox_runs"] == 0


def test_one_file_change_reruns_only_steps_after_its_copy(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n"
        "RUN cat /b.txt > /copy\n"
    )
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a", "b.txt": "b"}, dockerfile)
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--metadata-file", meta)
    (ctx / "b.txt").write_text("changed")
    pybuild.build(ctx, "--metadata-file", meta)
    cached = [s["cached"] for s in steps_of(meta)]
    assert cached == [True, True, False, False]
    assert "changed" in steps_of(meta)[2]["reason"] or steps_of(meta)[2]["reason"]


def test_mtime_only_change_still_hits(pybuild: Pybuild, tmp_path: Path) -> None:
    import os

    ctx = write_context(tmp_path / "ctx", {"a.txt": "a"}, "FROM busybox\nCOPY a.txt /\n")
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--metadata-file", meta)
    os.utime(ctx / "a.txt", (1, 1))
    pybuild.build(ctx, "--metadata-file", meta)
    assert [s["cached"] for s in steps_of(meta)] == [True]


def test_no_cache_flag_reexecutes_every_step(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN echo x > /x\n")
    meta = tmp_path / "meta.json"
    pybuild.build(ctx)
    pybuild.build(ctx, "--no-cache", "--metadata-file", meta)
    steps = steps_of(meta)
    assert [s["cached"] for s in steps] == [False]
    assert steps[0]["reason"] == "--no-cache"


def test_build_arg_change_misses_run_step(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nARG V=1\nRUN echo $V > /v\n")
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--metadata-file", meta)
    pybuild.build(ctx, "--build-arg", "V=2", "--metadata-file", meta)
    steps = steps_of(meta)
    assert [s["cached"] for s in steps] == [False]
    assert "V" in steps[0]["reason"]


def test_reproducible_digest_with_source_date_epoch(
    pybuild: Pybuild, tmp_path: Path, base_archive: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"a.txt": "a"}, "FROM busybox\nCOPY a.txt /\nRUN echo x > /x\n"
    )
    first = pybuild.build(ctx, "-q", "--source-date-epoch", "1700000000").out.strip()
    other = Pybuild(tmp_path / "store2")
    other("load", "-i", base_archive)
    second = other.build(ctx, "-q", "--source-date-epoch", "1700000000").out.strip()
    assert first.startswith("sha256:") and first == second
