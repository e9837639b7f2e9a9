"""The Dockerfile, its ignore files and COPY/ADD sources are read as BuildKit reads them:
a symlink is followed only inside the directory that holds it and ``..`` stops at the
context root, so nothing outside the context leaks; ``<Dockerfile>.dockerignore`` beside
the Dockerfile wins over the context's ``.dockerignore``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

SECRET = "root:$6$PYBUILDSECRETHASH$x:19000:0:99999:7:::\n"


def _secret(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "shadow"
    path.write_text(SECRET)
    return path


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_dockerfile_symlinked_out_of_the_context_is_refused_without_printing_it(
    pybuild: Pybuild, tmp_path: Path, relative: bool
) -> None:
    secret = _secret(tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    target = os.path.relpath(secret, ctx) if relative else str(secret)
    (ctx / "Dockerfile").symlink_to(target)
    result = pybuild.build(ctx, "-t", "leak:1", ok=False)
    assert result.code != 0
    both = result.out + result.err
    assert "PYBUILDSECRETHASH" not in both and "19000" not in both
    assert "Traceback" not in both
    assert "is a symlink to" in result.err and f"outside {ctx}" in result.err
    assert "hint:" in result.err
    assert pybuild("images", "-q", "leak:1", ok=False).out.strip() == ""


def test_dockerfile_named_with_f_as_a_symlink_out_of_its_directory_is_refused(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    secret = _secret(tmp_path)
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\n")
    (ctx / "ci.Dockerfile").symlink_to(secret)
    result = pybuild.build(ctx, "-f", ctx / "ci.Dockerfile", ok=False)
    assert result.code != 0
    assert "PYBUILDSECRETHASH" not in result.out + result.err
    assert "is a symlink to" in result.err


def test_dockerfile_outside_the_context_named_with_f_still_builds(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "app.Dockerfile").write_text("FROM busybox\nLABEL from=outside\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    pybuild.build(ctx, "-f", elsewhere / "app.Dockerfile", "-t", "outside:1")
    assert pybuild.config("outside:1")["Labels"] == {"from": "outside"}


@pytest.mark.parametrize("target", ["docker/real.Dockerfile", "/docker/real.Dockerfile"])
def test_dockerfile_symlink_inside_the_context_is_followed_there(
    pybuild: Pybuild, tmp_path: Path, target: str
) -> None:
    # An absolute target is taken from the context root, as BuildKit does.
    ctx = tmp_path / "ctx"
    (ctx / "docker").mkdir(parents=True)
    (ctx / "docker" / "real.Dockerfile").write_text("FROM busybox\nLABEL via=link\n")
    (ctx / "Dockerfile").symlink_to(target)
    pybuild.build(ctx, "-t", "linked:1")
    assert pybuild.config("linked:1")["Labels"] == {"via": "link"}


def test_dockerignore_symlinked_out_of_the_context_is_not_read(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.dockerignore"
    outside.write_text("keep.txt\n")
    ctx = write_context(
        tmp_path / "ctx", {"keep.txt": "kept\n"}, "FROM busybox\nCOPY keep.txt /keep.txt\n"
    )
    (ctx / ".dockerignore").symlink_to(outside)
    out = tmp_path / "out"
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    assert (out / "keep.txt").read_text() == "kept\n"


def test_copy_sources_cannot_escape_the_context(pybuild: Pybuild, tmp_path: Path) -> None:
    # BuildKit (checked with dockerd 20.10): `..` is cleaned against the context root and
    # symlinks resolve inside it, so a path outside is simply not found there.
    outside = tmp_path / "outside.txt"
    outside.write_text("host secret")
    ctx = write_context(tmp_path / "ctx", {"in.txt": "inside"}, "FROM busybox\n")
    (ctx / "abs-link").symlink_to(outside)
    (ctx / "rel-link").symlink_to("../outside.txt")
    for source, hint in (
        ("../outside.txt", "looked up in the build context"),
        ("abs-link", "points outside the build context"),
        ("rel-link", "points outside the build context"),
    ):
        for verb in ("COPY", "ADD"):
            (ctx / "Dockerfile").write_text(f"FROM busybox\n{verb} {source} /x\n")
            result = pybuild.build(ctx, ok=False)
            assert result.code == 1 and "Dockerfile:2" in result.err, (verb, source)
            assert "file not found in build context" in result.err and hint in result.err
            assert "host secret" not in result.out + result.err
    out = tmp_path / "rootfs"
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY ../../in.txt /x\n")
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    assert (out / "x").read_text() == "inside"


def test_dockerfile_named_dockerignore_takes_precedence(pybuild: Pybuild, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "a.txt": "a",
        "b.txt": "b",
        ".dockerignore": "a.txt\n",
        "build/app.Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
        "build/app.Dockerfile.dockerignore": "b.txt\n",
    }
    ctx = write_context(tmp_path / "ctx", files, "FROM busybox\nCOPY . /ctx/\n")
    out = tmp_path / "named"
    pybuild.build(ctx, "-f", ctx / "build" / "app.Dockerfile", "-o", f"type=local,dest={out}")
    assert (out / "ctx" / "a.txt").exists() and not (out / "ctx" / "b.txt").exists()
    plain = tmp_path / "plain"
    pybuild.build(ctx, "-o", f"type=local,dest={plain}")
    assert not (plain / "ctx" / "a.txt").exists() and (plain / "ctx" / "b.txt").exists()
    (ctx / "Dockerfile.dockerignore").write_text("b.txt\n")
    beside = tmp_path / "beside"
    pybuild.build(ctx, "-o", f"type=local,dest={beside}")
    assert (beside / "ctx" / "a.txt").exists() and not (beside / "ctx" / "b.txt").exists()
