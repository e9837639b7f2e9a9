"""RUN --mount=type=cache through the CLI: --no-cache empties it, source= selects a subdir.

Sources: BuildKit llbsolver/vertex.go detectPrunedCacheID and worker/base PruneCacheMounts
(an op with IgnoreCache prunes the cache mounts of its ids before the build; moby/buildkit
#5305 and PR #5306); frontend/dockerfile/dockerfile_mount_test.go
testCacheMountSourceEscape and executor/oci/spec.go subMount (``source=`` is a path inside
the cache, which must exist, resolved without leaving the cache).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

APPEND = (
    "FROM busybox\n"
    "RUN --mount=type=cache,id=log,target=/c echo {word} >> /c/log && cp /c/log /seen\n"
    "RUN --mount=type=cache,id=log,target=/d cp /d/log /seen-later\n"
)


def _seen(pybuild: Pybuild, ctx: Path, out: Path, word: str, *args: str) -> tuple[str, str]:
    (ctx / "Dockerfile").write_text(APPEND.format(word=word))
    pybuild.build(ctx, "-o", f"type=local,dest={out}", *args)
    return (out / "seen").read_text(), (out / "seen-later").read_text()


def test_no_cache_starts_cache_mounts_empty(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "")
    assert _seen(pybuild, ctx, tmp_path / "1", "one") == ("one\n", "one\n")
    assert _seen(pybuild, ctx, tmp_path / "2", "two") == ("one\ntwo\n", "one\ntwo\n")
    # --no-cache: the cache starts empty, and is shared by the build's RUNs after that.
    assert _seen(pybuild, ctx, tmp_path / "3", "three", "--no-cache") == ("three\n", "three\n")
    # The cache the --no-cache build filled is the one later builds see.
    assert _seen(pybuild, ctx, tmp_path / "4", "four") == ("three\nfour\n", "three\nfour\n")


def test_no_cache_filter_empties_only_the_caches_of_its_stage(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    dockerfile = (
        "FROM busybox AS a\n"
        "RUN --mount=type=cache,id=ca,target=/c echo {w} >> /c/log && cp /c/log /seen\n"
        "FROM busybox AS b\n"
        "RUN --mount=type=cache,id=cb,target=/c echo {w} >> /c/log && cp /c/log /seen\n"
        "FROM busybox\nCOPY --from=a /seen /a\nCOPY --from=b /seen /b\n"
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile.format(w="one"))
    pybuild.build(ctx)
    (ctx / "Dockerfile").write_text(dockerfile.format(w="two"))
    out = tmp_path / "out"
    pybuild.build(ctx, "--no-cache-filter", "b", "-o", f"type=local,dest={out}")
    assert (out / "a").read_text() == "one\ntwo\n"
    assert (out / "b").read_text() == "two\n"


def test_cache_mount_source_mounts_that_subdirectory(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=cache,id=s,target=/c mkdir -p /c/sub && echo hi > /c/sub/f "
        "&& echo top > /c/top\n"
        "RUN --mount=type=cache,id=s,source=sub,target=/x cat /x/f > /got && ls /x > /list "
        "&& echo new > /x/g\n"
        "RUN --mount=type=cache,id=s,target=/c cat /c/sub/g > /written\n"
    )
    out = tmp_path / "out"
    pybuild.build(write_context(tmp_path / "ctx", {}, dockerfile), "-o", f"type=local,dest={out}")
    assert (out / "got").read_text() == "hi\n"
    assert (out / "list").read_text() == "f\n"  # the subdir, not the cache's top
    assert (out / "written").read_text() == "new\n"  # writes land in the cache's subdir


def test_cache_mount_source_missing_is_an_error(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nRUN --mount=type=cache,id=m,source=nope,target=/x ls /x\n"
    result = pybuild.build(write_context(tmp_path / "ctx", {}, dockerfile), ok=False)
    err = " ".join(result.err.split())
    assert result.code != 0
    assert "/nope does not exist in the cache" in err
    assert "Dockerfile:2" in err or "line 2" in err
    assert "Traceback" not in result.err


def test_cache_mount_source_link_cannot_leave_the_cache(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=cache,id=esc,target=/c ln -s /etc /c/sel\n"
        "RUN --mount=type=cache,id=esc,source=sel,target=/victim cat /victim/passwd\n"
    )
    result = pybuild.build(write_context(tmp_path / "ctx", {}, dockerfile), ok=False)
    assert result.code != 0
    assert "does not exist in the cache" in " ".join(result.err.split())


def test_no_cache_empties_a_cache_given_mode_too(pybuild: Pybuild, tmp_path: Path) -> None:
    # moby/buildkit#5305: with mode= the cache has a parent, and was left full.
    run = "RUN --mount=type=cache,id=npm,mode=0755,target=/root/.npm"
    dockerfile = f"FROM busybox\n{run} echo {{w}} >> /root/.npm/log && cp /root/.npm/log /seen\n"
    ctx = write_context(tmp_path / "ctx", {}, dockerfile.format(w="one"))
    pybuild.build(ctx)
    (ctx / "Dockerfile").write_text(dockerfile.format(w="two"))
    out = tmp_path / "out"
    pybuild.build(ctx, "--no-cache", "-o", f"type=local,dest={out}")
    assert (out / "seen").read_text() == "two\n"


def test_each_mode_uid_gid_setting_is_a_cache_of_its_own(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=cache,id=o,target=/c echo plain > /c/f\n"
        "RUN --mount=type=cache,id=o,mode=0700,target=/d echo m700 > /d/f\n"
        "RUN --mount=type=cache,id=o,target=/c cat /c/f > /plain\n"
        "RUN --mount=type=cache,id=o,mode=0700,target=/d cat /d/f > /m700\n"
    )
    out = tmp_path / "out"
    pybuild.build(write_context(tmp_path / "ctx", {}, dockerfile), "-o", f"type=local,dest={out}")
    assert (out / "plain").read_text() == "plain\n"
    assert (out / "m700").read_text() == "m700\n"
