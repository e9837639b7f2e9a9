"""RUN --mount=type=cache through the CLI: persistence, ownership, seeding, prune."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, Result, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _fail_build(pybuild: Pybuild, ctx: Path, *args: str | Path) -> Result:
    """A build expected to fail; stderr unwrapped (rich wraps at the terminal width)."""
    result = pybuild(*args, "--progress", "plain", ctx, ok=False, env={"COLUMNS": "2000"})
    return Result(result.code, result.out, " ".join(result.err.split()))


def _build_rootfs(pybuild: Pybuild, ctx: Path, out: Path, *args: str) -> Path:
    pybuild.build(ctx, "-o", f"type=local,dest={out}", *args)
    return out


def test_cache_mount_persists_across_builds_and_stays_out_of_the_layer(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    run = "RUN --mount=type=cache,target=/var/cache/app"
    ctx = write_context(
        tmp_path / "ctx", {}, f"FROM busybox\n{run} echo one >> /var/cache/app/log\n"
    )
    first = _build_rootfs(pybuild, ctx, tmp_path / "one")
    assert not (first / "var" / "cache" / "app").exists()  # not even the mount point
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\n{run} echo two >> /var/cache/app/log && cp /var/cache/app/log /seen\n"
    )
    second = _build_rootfs(pybuild, ctx, tmp_path / "two")
    assert (second / "seen").read_text() == "one\ntwo\n"
    assert not (second / "var" / "cache" / "app" / "log").exists()


def test_cache_mount_content_is_not_in_the_step_key(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nRUN --mount=type=cache,id=k,target=/c date >> /c/runs\n"
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    pybuild.build(ctx)
    again = pybuild.build(ctx)  # the cache dir changed, the step did not: a hit
    assert "1/1 steps cached" in again.out + again.err


def test_cache_mount_id_is_shared_between_targets(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\nRUN --mount=type=cache,id=shared,target=/a echo hi > /a/f\n"
        "RUN --mount=type=cache,id=shared,target=/b,ro cp /b/f /got "
        "&& ! touch /b/new 2>/dev/null\n"
    )
    out = _build_rootfs(pybuild, write_context(tmp_path / "ctx", {}, dockerfile), tmp_path / "o")
    assert (out / "got").read_text() == "hi\n"


def test_cache_mount_mode_uid_gid_apply_to_a_new_cache(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\nRUN --mount=type=cache,target=/c,uid=1000,gid=1001,mode=0710 "
        "stat -c '%u %g %a' /c > /owner\n"
    )
    out = _build_rootfs(pybuild, write_context(tmp_path / "ctx", {}, dockerfile), tmp_path / "o")
    assert (out / "owner").read_text() == "1000 1001 710\n"


def test_cache_mount_from_stage_is_seeded_once(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox AS data\nRUN mkdir /d && echo seed > /d/x\n"
        "FROM busybox\nRUN --mount=type=cache,target=/c,from=data,source=/d "
        "cat /c/x > /seen && echo more >> /c/x\n"
        "RUN --mount=type=cache,target=/c,from=data,source=/d cat /c/x > /again\n"
    )
    out = _build_rootfs(pybuild, write_context(tmp_path / "ctx", {}, dockerfile), tmp_path / "o")
    assert (out / "seen").read_text() == "seed\n"
    assert (out / "again").read_text() == "seed\nmore\n"


def test_cache_prune_all_empties_cache_mounts(pybuild: Pybuild, tmp_path: Path) -> None:
    run = "RUN --mount=type=cache,target=/c"
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\n{run} echo kept > /c/f\n")
    pybuild.build(ctx)
    assert any((pybuild.root / "cachemounts").iterdir())
    pybuild("cache", "prune", "--all")
    assert not (pybuild.root / "cachemounts").exists()
    (ctx / "Dockerfile").write_text(f"FROM busybox\n{run} ls /c > /listing\n")
    out = _build_rootfs(pybuild, ctx, tmp_path / "o")
    assert (out / "listing").read_text() == ""


@pytest.mark.parametrize(
    ("mount", "expected"),
    [
        ("type=cache,target=/c,sharing=sometimes", "invalid sharing 'sometimes'"),
        ("type=cache,target=/c,mode=rwx", "mode must be octal"),
        ("type=cache,target=/c,size=1m", "unexpected key 'size' for type=cache"),
        ("type=cache,id=x", "a target is required"),
        ("type=volume,target=/c", 'unsupported mount type "volume"'),
        ("type=secret,id=x,required=maybe", "required=maybe is not true or false"),
        ("type=ssh,src=/x", "unexpected key 'src' for type=ssh"),
    ],
)
def test_mount_flag_errors_name_file_and_line(
    pybuild: Pybuild, tmp_path: Path, mount: str, expected: str
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\nRUN true\nRUN --mount={mount} true\n")
    result = _fail_build(pybuild, ctx)
    assert result.code == 1
    assert f"{ctx / 'Dockerfile'}:3:" in result.err
    assert expected in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("sharing", ["shared", "private", "locked"])
def test_cache_mount_sharing_modes_keep_contents(
    pybuild: Pybuild, tmp_path: Path, sharing: str
) -> None:
    dockerfile = (
        f"FROM busybox\nARG N=1\nRUN --mount=type=cache,id=s,target=/c,sharing={sharing} "
        "echo run $N >> /c/log && wc -l < /c/log > /count\n"
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    pybuild.build(ctx)
    out = tmp_path / "rootfs"
    # A new ARG value runs the step again (--no-cache would start the cache empty).
    pybuild.build(ctx, "--build-arg", "N=2", "-o", f"type=local,dest={out}")
    assert (out / "count").read_text().strip() == "2"
