"""Miss explanations through the CLI: a scripted sequence of edits, each naming its cause."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import Pybuild, steps_of, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

DOCKERFILE = """FROM mybase
ARG VERSION=1.0
COPY app/ /app/
RUN echo $VERSION > /version
ENV MODE=fast
RUN echo $MODE > /mode
"""


def _reasons(meta: Path) -> list[tuple[bool, str]]:
    return [(s["cached"], s["reason"]) for s in steps_of(meta)]


def test_each_edit_is_explained_by_its_real_cause(pybuild: Pybuild, tmp_path: Path) -> None:
    files = {"app/main.py": "print(1)\n", "app/util.py": "x = 1\n"}
    ctx = write_context(tmp_path / "ctx", files, DOCKERFILE)
    meta = tmp_path / "meta.json"
    pybuild("tag", "busybox", "mybase")

    def build(*args: str) -> list[tuple[bool, str]]:
        pybuild.build(ctx, "--metadata-file", meta, *args)
        return _reasons(meta)

    assert build() == [(False, "first build")] * 3
    assert build() == [(True, "")] * 3

    (ctx / "app" / "main.py").write_text("print(2)\n")
    assert build() == [
        (False, "file app/main.py changed (content)"),
        (False, "parent step missed"),
        (False, "parent step missed"),
    ]

    (ctx / "app" / "util.py").chmod(0o600)
    (ctx / "app" / "new.py").write_text("")
    assert build()[0] == (False, "file app/new.py added; file app/util.py changed (mode)")

    assert build("--build-arg", "VERSION=1.1") == [
        (True, ""),
        (False, "ARG VERSION changed (1.0 → 1.1)"),
        (False, "parent step missed; ARG VERSION changed (1.0 → 1.1)"),
    ]

    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("MODE=fast", "MODE=slow"))
    assert build("--build-arg", "VERSION=1.1")[2] == (False, "ENV MODE changed (fast → slow)")

    edited = DOCKERFILE.replace("MODE=fast", "MODE=slow").replace("> /mode", "> /mode2")
    (ctx / "Dockerfile").write_text(edited)
    assert build("--build-arg", "VERSION=1.1")[2] == (False, "instruction text changed")

    assert build("--no-cache") == [(False, "--no-cache")] * 3

    old_base = pybuild.inspect("mybase")["Digest"]
    base_ctx = write_context(tmp_path / "base", {}, "FROM busybox\nRUN touch /marker\n")
    pybuild.build(base_ctx, "-t", "mybase")
    new_base = pybuild.inspect("mybase")["Digest"]
    first = build()[0]
    assert first == (
        False,
        f"base image changed ({old_base[:19]} → {new_base[:19]})",
    )


def test_explain_flag_prints_a_table_of_steps(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"a": "1"}, "FROM busybox\nCOPY a /a\nRUN cat /a\n")
    pybuild.build(ctx)
    (ctx / "a").write_text("2")
    err = pybuild.build(ctx, "--explain").err
    table = err[err.index("STEP") :]
    assert "RESULT" in table and "REASON" in table
    assert "COPY a /a" in table and "file a changed (content)" in table
    assert "RUN cat /a" in table and "parent step missed" in table


def test_metadata_totals_count_time_saved_and_bytes_reused(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"big": "x" * 5000}, "FROM busybox\nCOPY big /big\nRUN sleep 0.3\n"
    )
    meta = tmp_path / "meta.json"
    pybuild.build(ctx, "--metadata-file", meta)
    first: dict[str, Any] = json.loads(meta.read_text())
    pybuild.build(ctx, "--metadata-file", meta)
    second: dict[str, Any] = json.loads(meta.read_text())
    ran = first["steps"]
    assert first["totals"]["time_saved"] == 0
    assert second["totals"]["hit_rate"] == 1.0
    assert second["totals"]["time_saved"] == pytest.approx(
        sum(s["duration"] for s in ran), abs=0.01
    )
    assert second["totals"]["time_saved"] >= 0.3
    # Both layers: the COPY's and the empty one BuildKit commits for the RUN too.
    assert second["totals"]["bytes_reused"] == sum(s["layer_size"] or 0 for s in ran)
    assert ran[0]["layer_size"] > 0 and ran[1]["layer_size"] > 0
    assert second["containerimage.digest"].startswith("sha256:")


def _explain_rows(err: str) -> list[str]:
    lines = err[err.index("STEP") :].splitlines()
    return [line for line in lines[1:] if " CACHED " in line or " MISS " in line]


def test_explain_table_and_metadata_name_the_same_file_causes(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    files = {f"app/m{i}.py": f"M = {i}\n" for i in range(5)}
    files |= {"app/util.py": "U = 1\n", "app/old.py": "O = 1\n", "docs/readme": "r\n"}
    ctx = write_context(tmp_path / "ctx", files, "FROM busybox\nCOPY app/ /app/\nRUN ls -lR /app\n")
    (ctx / "app" / "link").symlink_to("m0.py")
    meta = tmp_path / "meta.json"

    def build() -> list[tuple[bool, str]]:
        err = pybuild.build(ctx, "--explain", "--metadata-file", meta).err
        reasons = _reasons(meta)
        rows = _explain_rows(err)
        assert len(rows) == len(reasons), err
        for row, (cached, reason) in zip(rows, reasons, strict=True):
            assert (" CACHED " in row) == cached and row.endswith(reason), (row, reason)
        return reasons

    assert build() == [(False, "first build")] * 2
    (ctx / "app" / "link").unlink()
    (ctx / "app" / "link").symlink_to("util.py")
    assert build()[0] == (False, "symlink app/link changed (link target)")
    os.chown(ctx / "app" / "util.py", 1000, 1000)
    assert build()[0] == (False, "file app/util.py changed (owner)")
    (ctx / "app" / "old.py").unlink()
    assert build()[0] == (False, "file app/old.py removed")
    (ctx / "docs" / "readme").write_text("not copied\n")
    os.utime(ctx / "app" / "m0.py", (1, 1))  # mtime only
    assert build() == [(True, "")] * 2
    for i in range(5):
        (ctx / "app" / f"m{i}.py").write_text(f"M = {i + 10}\n")
    assert build() == [
        (
            False,
            "file app/m0.py changed (content); file app/m1.py changed (content); "
            "file app/m2.py changed (content); and 2 more files",
        ),
        (False, "parent step missed"),
    ]
