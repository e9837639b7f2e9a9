"""A scripted series of builds, a prune in the middle: history and stats survive it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

DOCKERFILE = "FROM busybox\nARG V=1\nCOPY app.txt /app.txt\nRUN echo $V > /v\n"


def _json(pybuild: Pybuild, *args: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(pybuild("cache", *args, "--json").out)
    return doc


def test_history_and_stats_by_label_over_a_series_with_a_prune(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"app.txt": "one\n"}, DOCKERFILE)
    job = ("--label", "ci.job=unit")
    pybuild.build(ctx, "-t", "series:1", *job)  # 1: first build, 2 misses
    pybuild.build(ctx, "-t", "series:1", *job)  # 2: all cached
    (ctx / "app.txt").write_text("two\n")
    pybuild.build(ctx, *job)  # 3: COPY misses (source), RUN misses (parent)
    pybuild("cache", "prune", "--all")
    meta = tmp_path / "m.json"
    pybuild.build(ctx, "--label", "ci.job=lint", "--build-arg", "V=2", "--metadata-file", meta)
    assert json.loads(meta.read_text())["labels"] == {"ci.job": "lint"}  # 4: after the prune

    history = _json(pybuild, "history")["builds"]
    assert len(history) == 4  # the prune kept the history
    assert [b["cached"] for b in history[:3]] == [0, 2, 0]
    assert history[0]["tags"] == ["series:1"]
    assert history[0]["misses"] == {"first-build": 2}
    assert history[2]["misses"] == {"parent": 1, "source": 1}
    assert history[3]["labels"] == {"ci.job": "lint"}
    assert all(b["steps"] == 2 and b["duration"] > 0 and b["image_id"] for b in history)
    text = pybuild("cache", "history").out
    assert "first-build=2" in text and "HIT RATE" in text and "series:1" in text

    stats = _json(pybuild, "stats", "--by", "label:ci.job")
    groups = {g["group"]: g for g in stats["groups"]}
    assert groups["unit"]["builds"] == 3 and groups["unit"]["cached"] == 2
    assert groups["unit"]["hit_rate"] == round(2 / 6, 4)
    assert groups["lint"]["builds"] == 1
    assert stats["overall"]["builds"] == 4
    table = pybuild("cache", "stats", "--by", "label:ci.job").out
    assert "LABEL:CI.JOB" in table and "unit" in table and "33%" in table

    assert "forgot 4" in pybuild("cache", "stats", "--reset").out
    assert _json(pybuild, "history")["builds"] == []
    bad = pybuild("cache", "stats", "--by", "colour", ok=False)
    assert bad.code == 2 and "label:KEY" in bad.err
