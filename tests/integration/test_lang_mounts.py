"""RUN --mount through the CLI: bind (context, stage, image, rw discarded), tmpfs, and a
secret's target, mode and owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, build_rootfs, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _rootfs(
    pybuild: Pybuild, tmp_path: Path, dockerfile: str, files: dict[str, str | bytes]
) -> Path:
    ctx = write_context(tmp_path / "ctx", files, dockerfile)
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    return out


def test_bind_mount_from_context_is_read_but_not_in_layer(pybuild: Pybuild, tmp_path: Path) -> None:
    out = _rootfs(
        pybuild,
        tmp_path,
        "FROM busybox\nRUN --mount=target=/src,source=app cat /src/a.txt > /copied "
        "&& ! touch /src/new 2>/dev/null\n",
        {"app/a.txt": "from context"},
    )
    assert (out / "copied").read_text() == "from context"
    assert not (out / "src" / "a.txt").exists()


def test_bind_mount_key_follows_context_content(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nRUN --mount=type=bind,target=/m,source=f cat /m > /out\n"
    ctx = write_context(tmp_path / "ctx", {"f": "one"}, dockerfile)
    pybuild.build(ctx)
    again = pybuild.build(ctx)
    assert "1/1 steps cached" in again.out + again.err
    (ctx / "f").write_text("two")
    changed = pybuild.build(ctx)
    assert "0/1 steps cached" in changed.out + changed.err


def test_rw_bind_mount_from_stage_discards_writes(pybuild: Pybuild, tmp_path: Path) -> None:
    out = _rootfs(
        pybuild,
        tmp_path,
        "FROM busybox AS data\nRUN mkdir /d && echo staged > /d/x\n"
        "FROM busybox\nRUN --mount=from=data,source=/d,target=/d,rw "
        "echo scribble > /d/x && cat /d/x > /seen\n"
        "RUN --mount=from=data,source=/d,target=/d cat /d/x > /after\n",
        {},
    )
    assert (out / "seen").read_text() == "scribble\n"
    assert (out / "after").read_text() == "staged\n"


def test_tmpfs_mount_is_empty_and_not_in_layer(pybuild: Pybuild, tmp_path: Path) -> None:
    out = _rootfs(
        pybuild,
        tmp_path,
        "FROM busybox\nRUN --mount=type=tmpfs,target=/scratch,size=1m "
        "echo x > /scratch/f && grep -q ' /scratch tmpfs ' /proc/mounts && touch /ok\n",
        {},
    )
    assert (out / "ok").exists()
    assert not (out / "scratch" / "f").exists()


def test_unsupported_mount_type_fails_with_line(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "c", {}, "FROM busybox\nRUN --mount=type=nfs,target=/x true\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code != 0 and "Dockerfile:2" in result.err
    assert 'unsupported mount type "nfs"' in result.err


def test_bind_mount_from_image_and_secret_mount_options(pybuild: Pybuild, tmp_path: Path) -> None:
    secret = tmp_path / "s.txt"
    secret.write_text("shh")
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=bind,from=busybox:latest,source=/bin,target=/imgbin "
        "test -x /imgbin/busybox && touch /bound\n"
        "RUN --mount=type=secret,id=s,target=/sec,mode=0440,uid=5,gid=6 "
        "stat -c '%a %u %g' /sec > /perm\n"
    )
    out = build_rootfs(pybuild, tmp_path, dockerfile, None, "--secret", f"id=s,src={secret}")
    assert (out / "bound").exists() and not (out / "imgbin").exists()
    assert (out / "perm").read_text() == "440 5 6\n"
    assert not (out / "sec").exists()
