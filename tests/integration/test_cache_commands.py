"""`pybuild cache stats|du|prune|verify` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _json(pybuild: Pybuild, *args: str) -> Any:
    return json.loads(pybuild("cache", *args, "--json").out)


def test_stats_reports_hit_rate_and_time_saved_by_dockerfile(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    a = write_context(tmp_path / "a", {}, "FROM busybox\nRUN sleep 0.2\nRUN echo a > /a\n")
    b = write_context(tmp_path / "b", {}, "FROM busybox\nRUN echo b > /b\n")
    pybuild.build(a)
    pybuild.build(a)
    pybuild.build(b)
    stats = _json(pybuild, "stats")
    by_file = {row["dockerfile"]: row for row in stats["dockerfiles"]}
    row_a = by_file[str((a / "Dockerfile").resolve())]
    assert (row_a["builds"], row_a["steps"], row_a["cached"]) == (2, 4, 2)
    assert row_a["hit_rate"] == 0.5
    assert row_a["time_saved"] >= 0.2
    assert stats["overall"]["builds"] == 3
    assert stats["overall"]["cached"] == 2
    assert _json(pybuild, "stats", "--since", "1h")["overall"]["builds"] == 3
    text = pybuild("cache", "stats").out
    assert "HIT RATE" in text and "50%" in text


def test_du_prune_and_verify_keep_a_tagged_image_working(pybuild: Pybuild, tmp_path: Path) -> None:
    kept = write_context(tmp_path / "kept", {}, "FROM busybox\nRUN echo kept > /kept\n")
    gone = write_context(tmp_path / "gone", {}, "FROM busybox\nRUN echo gone > /gone\n")
    pybuild.build(kept, "-t", "kept:1")
    pybuild.build(gone, "-t", "gone:1")
    pybuild("rmi", "gone:1")
    before = _json(pybuild, "du")
    assert before["bytes"]["layer_blobs"] > 0 and before["bytes"]["unpacked_layers"] > 0
    out = pybuild("cache", "prune", "--all").out
    assert "Total reclaimed space" in out
    after = _json(pybuild, "du")
    assert after["bytes"]["layer_blobs"] < before["bytes"]["layer_blobs"]
    assert after["total"] < before["total"]
    assert pybuild("run", "--rm", "kept:1", "cat", "/kept").out == "kept\n"
    meta = tmp_path / "meta.json"
    pybuild.build(kept, "--metadata-file", meta)
    assert json.loads(meta.read_text())["totals"]["hit_rate"] == 1.0
    report = _json(pybuild, "verify")
    assert report["clean"], report


def test_verify_finds_a_corrupt_blob_and_repair_fixes_the_store(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN echo hi > /hi\n")
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--metadata-file", meta)
    layer = json.loads(meta.read_text())["steps"][0]["layer"]
    blob = pybuild.root / "blobs" / "sha256" / layer.removeprefix("sha256:")
    blob.write_bytes(b"bit rot")
    bad = pybuild("cache", "verify", ok=False)
    assert bad.code == 1
    assert "corrupt-blob" in bad.out
    repaired = pybuild("cache", "verify", "--repair").out
    assert "removed corrupt blob" in repaired
    assert pybuild("cache", "verify").code == 0
    pybuild.build(ctx, "--metadata-file", meta)  # the step runs again
    assert json.loads(meta.read_text())["steps"][0]["cached"] is False


def test_bad_arguments_are_usage_errors_without_traceback(pybuild: Pybuild) -> None:
    for args in (("prune", "--filter", "label=x"), ("stats", "--since", "soon")):
        result = pybuild("cache", *args, ok=False)
        assert result.code != 0
        assert "error:" in result.err and "Traceback" not in result.err
