"""HEALTHCHECK, MAINTAINER, ONBUILD, automatic ARGs, FROM --platform and SOURCE_DATE_EPOCH
through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, build_error, build_rootfs, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _build(
    pybuild: Pybuild, tmp_path: Path, dockerfile: str, *args: str, name: str = "ctx"
) -> Path:
    ctx = write_context(tmp_path / name, {}, dockerfile)
    pybuild.build(ctx, *args)
    return ctx


def test_healthcheck_options_become_nanoseconds_and_history(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    _build(
        pybuild,
        tmp_path,
        "FROM busybox\nHEALTHCHECK --interval=5m --timeout=3s --start-period=1.5s "
        "--start-interval=100ms --retries=3 CMD wget -q localhost || exit 1\n",
        "-t",
        "h:1",
    )
    image = pybuild.inspect("h:1")["Config"]
    assert image["config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
        "Interval": 300_000_000_000,
        "Timeout": 3_000_000_000,
        "StartPeriod": 1_500_000_000,
        "StartInterval": 100_000_000,
        "Retries": 3,
    }
    assert image["history"][-1]["created_by"] == (
        'HEALTHCHECK &{["CMD-SHELL" "wget -q localhost || exit 1"] '
        '"5m0s" "3s" "1.5s" "100ms" \'\\x03\'}'
    )
    assert image["history"][-1]["empty_layer"] is True


def test_healthcheck_none_disables_an_inherited_check(pybuild: Pybuild, tmp_path: Path) -> None:
    _build(pybuild, tmp_path, 'FROM busybox\nHEALTHCHECK CMD ["true"]\n', "-t", "hc:1", name="a")
    assert pybuild.config("hc:1")["Healthcheck"] == {"Test": ["CMD", "true"]}
    _build(pybuild, tmp_path, "FROM hc:1\nHEALTHCHECK NONE\n", "-t", "hc:2", name="b")
    assert pybuild.config("hc:2")["Healthcheck"] == {"Test": ["NONE"]}


def test_healthcheck_bad_duration_fails_with_line(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "c", {}, "FROM busybox\nHEALTHCHECK --interval=5x CMD true\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code != 0
    assert "Dockerfile:2" in result.err and "invalid duration" in result.err
    assert "Traceback" not in result.err


def test_maintainer_sets_author_like_buildkit(pybuild: Pybuild, tmp_path: Path) -> None:
    _build(pybuild, tmp_path, "FROM busybox\nMAINTAINER Jane <jane@example.com>\n", "-t", "m:1")
    image = pybuild.inspect("m:1")["Config"]
    assert image["author"] == "Jane <jane@example.com>"
    assert "Labels" not in image["config"]
    assert image["history"][-1]["created_by"] == "MAINTAINER Jane <jane@example.com>"


def test_onbuild_triggers_run_in_child_and_are_not_inherited(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    parent = (
        "FROM busybox\n"
        "ONBUILD COPY marker.txt /from-child/\n"
        "ONBUILD RUN echo triggered > /triggered\n"
    )
    _build(pybuild, tmp_path, parent, "-t", "parent:1", name="p")
    config = pybuild.config("parent:1")
    assert config["OnBuild"] == ["COPY marker.txt /from-child/", "RUN echo triggered > /triggered"]
    child = write_context(tmp_path / "c", {"marker.txt": "child ctx"}, "FROM parent:1\n")
    out = tmp_path / "rootfs"
    pybuild.build(child, "-t", "child:1", "-o", f"type=local,dest={out}")
    assert (out / "from-child" / "marker.txt").read_text() == "child ctx"
    assert (out / "triggered").read_text() == "triggered\n"
    assert "OnBuild" not in pybuild.config("child:1")
    # A grandchild does not run them again (BuildKit clears them in the child).
    grand = write_context(tmp_path / "g", {}, "FROM child:1\nRUN test ! -e /from-child/x\n")
    pybuild.build(grand, "-t", "grand:1")


def test_onbuild_copy_from_stage_of_child_dockerfile(pybuild: Pybuild, tmp_path: Path) -> None:
    _build(pybuild, tmp_path, "FROM busybox\nONBUILD COPY --from=assets /a /a\n", "-t", "ob:1")
    child = write_context(
        tmp_path / "c",
        {},
        "FROM busybox AS assets\nRUN echo asset > /a\nFROM ob:1\n",
    )
    out = tmp_path / "rootfs"
    pybuild.build(child, "-o", f"type=local,dest={out}")
    assert (out / "a").read_text() == "asset\n"


def test_onbuild_refuses_onbuild_and_maintainer_triggers(pybuild: Pybuild, tmp_path: Path) -> None:
    for n, trigger in enumerate(("ONBUILD RUN true", "MAINTAINER x", "FROM busybox")):
        ctx = write_context(tmp_path / f"c{n}", {}, f"FROM busybox\nONBUILD {trigger}\n")
        result = pybuild.build(ctx, ok=False)
        assert result.code != 0 and "Dockerfile:2" in result.err, result.err
        assert "isn't allowed" in result.err


def test_platform_args_are_global_and_declarable(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM --platform=$BUILDPLATFORM busybox AS one\n"
        "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT\n"
        "ARG BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT\n"
        'RUN echo "$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT]" > /t && '
        'echo "$BUILDPLATFORM $BUILDOS $BUILDARCH [$BUILDVARIANT]" > /b\n'
        'FROM busybox\nRUN echo "[$TARGETARCH]" > /undeclared\n'
    )
    ctx = write_context(tmp_path / "c", {}, dockerfile)
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "--target", "one", "-o", f"type=local,dest={out}")
    assert (out / "t").read_text() == "linux/amd64 linux amd64 []\n"
    assert (out / "b").read_text() == "linux/amd64 linux amd64 []\n"
    out2 = tmp_path / "rootfs2"
    pybuild.build(ctx, "-o", f"type=local,dest={out2}")
    assert (out2 / "undeclared").read_text() == "[]\n"


def test_from_uses_platform_arg_without_declaring(pybuild: Pybuild, tmp_path: Path) -> None:
    pybuild("tag", "busybox", "busybox:amd64")
    result = _build(pybuild, tmp_path, "FROM busybox:$TARGETARCH\nRUN true\n")
    assert result.is_dir()


def test_proxy_args_reach_run_but_not_key_or_history(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = 'FROM busybox\nRUN echo "[$http_proxy]" > /p\n'
    ctx = write_context(tmp_path / "c", {}, dockerfile)
    out = tmp_path / "rootfs"
    first = pybuild.build(
        ctx, "-t", "p:1", "--build-arg", "http_proxy=http://a:1", "-o", f"type=local,dest={out}"
    )
    assert (out / "p").read_text() == "[http://a:1]\n"
    assert "not consumed" not in first.err + first.out
    history = pybuild.inspect("p:1")["Config"]["history"][-1]["created_by"]
    assert "http://a:1" not in history
    again = pybuild.build(ctx, "--build-arg", "http_proxy=http://b:2")
    assert "1/1 steps cached" in again.out + again.err


def test_declared_proxy_arg_enters_key_and_history(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = 'FROM busybox\nARG http_proxy\nRUN echo "[$http_proxy]" > /p\n'
    ctx = write_context(tmp_path / "c", {}, dockerfile)
    pybuild.build(ctx, "-t", "p:1", "--build-arg", "http_proxy=http://a:1")
    history = pybuild.inspect("p:1")["Config"]["history"][-1]["created_by"]
    assert "http_proxy=http://a:1" in history
    again = pybuild.build(ctx, "--build-arg", "http_proxy=http://b:2")
    assert "0/1 steps cached" in again.out + again.err


def test_source_date_epoch_build_arg_sets_image_times(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nARG SOURCE_DATE_EPOCH\nRUN echo $SOURCE_DATE_EPOCH > /epoch\n"
    ctx = write_context(tmp_path / "c", {}, dockerfile)
    out = tmp_path / "rootfs"
    result = pybuild.build(
        ctx, "-t", "e:1", "--build-arg", "SOURCE_DATE_EPOCH=86400", "-o", f"type=local,dest={out}"
    )
    assert "not consumed" not in result.err + result.out
    image = pybuild.inspect("e:1")["Config"]
    assert image["created"] == "1970-01-02T00:00:00Z"
    assert image["history"][-1]["created"] == "1970-01-02T00:00:00Z"
    assert (out / "epoch").read_text() == "86400\n"


def test_from_platform_local_builds_and_a_malformed_platform_fails_with_line(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    out = build_rootfs(
        pybuild, tmp_path / "ok", "FROM --platform=linux/amd64 busybox\nRUN echo ok > /ok\n"
    )
    assert (out / "ok").read_text() == "ok\n"
    err = build_error(
        pybuild,
        tmp_path / "bad",
        "ARG P=linux//arm64\nFROM --platform=$P busybox\nRUN true\n",
    )
    assert "Dockerfile:2" in err and "--platform=$P" in err
    assert "invalid platform 'linux//arm64'" in err
