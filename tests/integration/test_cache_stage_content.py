"""Steps reading from another stage are keyed on the content of the paths they use.

Sources: BuildKit solver/llbsolver/ops/exec.go CacheMap (a read-only mount's dep gets
``ComputeDigestFunc`` = ``NewContentHashFunc`` over its selector) and ops/file.go (the
same for each copy source), with cache/contenthash hashing type, mode, owner, link target
and content, never times. So a stage rebuilt with identical content, or one whose other
paths changed, leaves the steps that read it cached.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, steps_of, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

# healthchecks' Dockerfile in small: the wheels stage also takes the sources, and the app
# stage installs from its /wheels; a source edit must not re-run the install.
WHEELS = """FROM busybox AS wheels
COPY requirements.txt /tmp/
RUN mkdir /wheels && grep -v "^#" /tmp/requirements.txt > /wheels/app.whl \\
 && echo dep > /wheels/dep.whl
COPY src/ /opt/app/

FROM busybox AS app
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels ls /wheels > /installed
COPY --from=wheels /opt/app/ /opt/app/
"""


def _build(pybuild: Pybuild, ctx: Path, meta: Path, *args: str) -> list[tuple[bool, str]]:
    pybuild.build(ctx, "--metadata-file", meta, *args)
    return [(s["cached"], s["reason"]) for s in steps_of(meta)]


@pytest.fixture
def wheels_ctx(tmp_path: Path) -> Path:
    files: dict[str, str | bytes] = {"requirements.txt": "flask==3\n", "src/main.py": "print(1)\n"}
    return write_context(tmp_path / "ctx", files, WHEELS)


def test_source_edit_leaves_the_run_mounting_wheels_cached(
    pybuild: Pybuild, wheels_ctx: Path, tmp_path: Path
) -> None:
    meta = tmp_path / "meta.json"
    assert _build(pybuild, wheels_ctx, meta) == [(False, "first build")] * 5
    (wheels_ctx / "src" / "main.py").write_text("print(2)\n")
    assert _build(pybuild, wheels_ctx, meta) == [
        (True, ""),
        (True, ""),
        (False, "file src/main.py changed (content)"),
        (True, ""),  # RUN --mount=from=wheels: the wheels did not change
        (False, "file /opt/app/main.py changed (content)"),
    ]


def test_stage_rebuilt_with_identical_content_keeps_its_readers_cached(
    pybuild: Pybuild, wheels_ctx: Path, tmp_path: Path
) -> None:
    meta = tmp_path / "meta.json"
    _build(pybuild, wheels_ctx, meta)
    # A comment in the requirements: the wheels stage runs again (new layers, new
    # mtimes) and makes the same wheels, so the RUN mounting them stays cached.
    (wheels_ctx / "requirements.txt").write_text("# pinned\nflask==3\n")
    assert _build(pybuild, wheels_ctx, meta) == [
        (False, "file requirements.txt changed (content)"),
        (False, "parent step missed"),
        (False, "parent step missed"),
        (True, ""),
        (True, ""),
    ]
    assert _build(pybuild, wheels_ctx, meta, "--no-cache-filter", "wheels") == [
        (False, "--no-cache-filter"),
        (False, "--no-cache-filter"),
        (False, "--no-cache-filter"),
        (True, ""),
        (True, ""),
    ]


def test_a_real_change_names_the_file_that_changed(
    pybuild: Pybuild, wheels_ctx: Path, tmp_path: Path
) -> None:
    meta = tmp_path / "meta.json"
    _build(pybuild, wheels_ctx, meta)
    (wheels_ctx / "requirements.txt").write_text("flask==4\n")
    assert _build(pybuild, wheels_ctx, meta) == [
        (False, "file requirements.txt changed (content)"),
        (False, "parent step missed"),
        (False, "parent step missed"),
        (False, "file /wheels/app.whl changed (content)"),
        # /opt/app is the same: only the parent (the RUN above) missed.
        (False, "parent step missed"),
    ]


def test_copy_from_is_keyed_on_the_copied_paths_only(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox AS build\nCOPY a.txt /out/a.txt\nCOPY b.txt /other/b.txt\n"
        "FROM busybox\nCOPY --from=build /out/ /app/\n"
        "RUN --mount=type=bind,from=build,source=/out,target=/o cat /o/a.txt > /seen\n"
    )
    ctx = write_context(tmp_path / "ctx", {"a.txt": "a1", "b.txt": "b1"}, dockerfile)
    meta = tmp_path / "meta.json"
    _build(pybuild, ctx, meta)
    (ctx / "b.txt").write_text("b2")
    assert [cached for cached, _ in _build(pybuild, ctx, meta)] == [True, False, True, True]
    (ctx / "a.txt").write_text("a2")
    assert _build(pybuild, ctx, meta)[2:] == [
        (False, "file /out/a.txt changed (content)"),
        (False, "parent step missed; file /o/a.txt changed (content)"),
    ]


def test_bind_mount_of_the_context_names_the_changed_file(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nRUN --mount=type=bind,source=conf,target=/c cat /c/x > /x\n"
    ctx = write_context(tmp_path / "ctx", {"conf/x": "1", "other": "o"}, dockerfile)
    meta = tmp_path / "meta.json"
    _build(pybuild, ctx, meta)
    (ctx / "other").write_text("o2")
    assert _build(pybuild, ctx, meta) == [(True, "")]
    (ctx / "conf" / "x").write_text("2")
    assert _build(pybuild, ctx, meta) == [(False, "file /c/x changed (content)")]
