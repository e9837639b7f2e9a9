"""Reproducible by default in a git checkout, and the stat cache never gives a false hit."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, steps_of, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _git(ctx: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "GIT_COMMITTER_DATE": "2023-11-14T22:13:20Z",
        "GIT_AUTHOR_DATE": "2023-11-14T22:13:20Z",
    }
    subprocess.run(["git", "-C", str(ctx), *args], check=True, capture_output=True, env=env)


def test_git_context_builds_the_same_digest_in_two_stores_despite_new_mtimes(
    pybuild: Pybuild, tmp_path: Path, base_archive: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"app/main.py": "print(1)\n"}, "FROM busybox\nCOPY app /app\n"
    )
    _git(ctx, "init", "-q")
    _git(ctx, "add", ".")
    _git(ctx, "commit", "-q", "-m", "one")
    first = pybuild.build(ctx, "-q").out.strip()
    later = time.time() + 3600  # as a fresh checkout would: every mtime newer than the commit
    for path in (ctx / "app" / "main.py", ctx / "app"):
        os.utime(path, (later, later))
    other = Pybuild(tmp_path / "store2")
    other("load", "-i", base_archive)
    second = other.build(ctx, "-q").out.strip()
    assert first.startswith("sha256:") and first == second
    created = other.inspect(second)["Config"]["created"]
    assert created == "2023-11-14T22:13:20Z"


def test_non_git_context_without_epoch_says_it_is_not_reproducible(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\n")
    err = pybuild.build(ctx).err
    assert "not reproducible" in err
    assert "not reproducible" not in pybuild.build(ctx, "--source-date-epoch", "1").err


def test_stat_cache_remembers_settled_files_and_sees_content_edits_that_keep_mtime(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"a.txt": "aaaa"}, "FROM busybox\nCOPY a.txt /a\n")
    time.sleep(2.2)  # older than the racy window, so the stat cache keeps it
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--metadata-file", meta)
    db = sqlite3.connect(pybuild.root / "fscache.db")
    paths = [row[0] for row in db.execute("SELECT path FROM files")]
    db.close()
    assert str((ctx / "a.txt").resolve()) in paths
    st = (ctx / "a.txt").stat()
    (ctx / "a.txt").write_text("bbbb")  # same size; mtime put back below
    os.utime(ctx / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    pybuild.build(ctx, "--metadata-file", meta)
    (step,) = steps_of(meta)
    assert step["cached"] is False
    assert step["reason"] == "file a.txt changed (content)"
