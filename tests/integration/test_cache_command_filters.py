"""`pybuild cache stats --since` and `cache prune --keep-storage` with `--filter until`
through the CLI: older builds left out, a tagged image kept, bad values refused."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import Pybuild, steps_of, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _json(pybuild: Pybuild, *args: str) -> Any:
    return json.loads(pybuild("cache", *args, "--json").out)


def test_stats_since_leaves_out_older_builds_by_dockerfile_and_overall(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    a = write_context(tmp_path / "a", {}, "FROM busybox\nRUN echo a > /a\n")
    b = write_context(tmp_path / "b", {}, "FROM busybox\nRUN echo b > /b\n")
    pybuild.build(a)
    db = sqlite3.connect(pybuild.root / "index.db")
    with db:  # make the build of a two days old
        db.execute("UPDATE builds SET started = started - 172800, finished = finished - 172800")
    db.close()
    pybuild.build(b)
    pybuild.build(b)
    every = _json(pybuild, "stats")
    assert every["overall"]["builds"] == 3
    recent = _json(pybuild, "stats", "--since", "1d")
    files = {row["dockerfile"] for row in recent["dockerfiles"]}
    assert files == {str((b / "Dockerfile").resolve())}
    assert recent["overall"]["builds"] == 2
    assert (recent["overall"]["steps"], recent["overall"]["cached"]) == (2, 1)
    assert recent["overall"]["hit_rate"] == 0.5
    bad = pybuild("cache", "stats", "--since", "yesterday", ok=False)
    assert bad.code != 0 and "invalid duration" in bad.err and "Traceback" not in bad.err


def test_prune_with_keep_storage_and_until_keeps_a_tagged_image_buildable_and_runnable(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    kept = write_context(tmp_path / "kept", {}, "FROM busybox\nRUN echo kept > /kept\n")
    gone = write_context(tmp_path / "gone", {}, "FROM busybox\nRUN echo gone > /gone\n")
    pybuild.build(kept, "-t", "kept:1")
    pybuild.build(gone, "-t", "gone:1")
    pybuild("rmi", "gone:1")
    time.sleep(1.1)
    pybuild("cache", "prune", "--keep-storage", "1B", "--filter", "until=1s")
    assert pybuild("run", "--rm", "kept:1", "cat", "/kept").out == "kept\n"
    assert _json(pybuild, "verify")["clean"]
    meta = tmp_path / "meta.json"
    pybuild.build(gone, "--metadata-file", meta)
    assert [s["cached"] for s in steps_of(meta)] == [False]  # its record went
    bad = pybuild("cache", "prune", "--filter", "label=x", ok=False)
    assert bad.code != 0 and "until=DURATION" in bad.err and "Traceback" not in bad.err
