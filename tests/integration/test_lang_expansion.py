"""Issue 3 audit: the language items no other CLI test covered (see tests/COVERAGE-issue3.md).

Each test drives the real CLI. Expected values come from the Dockerfile reference and,
where noted, from dockerd 20.10's BuildKit run on this machine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, build_rootfs, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _fail(pybuild: Pybuild, tmp_path: Path, dockerfile: str, *args: str) -> str:
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    result = pybuild.build(ctx, *args, ok=False)
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    return result.err


def test_undeclared_build_arg_warns_and_names_only_the_unused(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nARG USED\nRUN echo $USED > /u\n")
    result = pybuild.build(ctx, "--build-arg", "USED=1", "--build-arg", "NOPE=2")
    assert "WARNING: build-args not consumed by any ARG: NOPE\n" in result.err


def test_from_platform_local_builds_and_another_platform_fails_with_line(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    out = build_rootfs(
        pybuild, tmp_path / "ok", "FROM --platform=linux/amd64 busybox\nRUN echo ok > /ok\n"
    )
    assert (out / "ok").read_text() == "ok\n"
    err = _fail(
        pybuild,
        tmp_path / "bad",
        "ARG P=linux/arm64\nFROM --platform=$P busybox\nRUN true\n",
    )
    assert "Dockerfile:2" in err and "--platform=linux/arm64" in err
    assert "only the local platform linux/amd64" in err


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


def test_add_local_chown_chmod_link_exclude(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "ADD --chown=7:8 --chmod=640 f.txt /a/f.txt\n"
        "ADD --link d /linked/\n"
        "ADD --exclude=*.log --exclude=skip d /excl/\n"
    )
    files: dict[str, str | bytes] = {"f.txt": "f", "d/keep.txt": "k", "d/x.log": "l", "d/skip": "s"}
    out = build_rootfs(pybuild, tmp_path, dockerfile, files)
    st = os.lstat(out / "a" / "f.txt")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (7, 8, 0o640)
    assert sorted(p.name for p in (out / "linked").iterdir()) == ["keep.txt", "skip", "x.log"]
    assert sorted(p.name for p in (out / "excl").iterdir()) == ["keep.txt"]


# dockerd 20.10's BuildKit (Dockerfile 1.2) agrees on what it knows here (:- :+ \$,
# quotes, --chown expansion, ONBUILD expanded in the child with the parent's ENV); it
# predates the other modifiers (Dockerfile 1.6+) and expanding RUN --mount options.
MODIFIERS_PARENT = """\
ARG BASE=busybox:latest
ARG TAG
FROM ${BASE%%:*}:${TAG:-latest} AS first
RUN echo staged > /staged
FROM ${BASE%:*}
ARG NAME=release-1.2.3
ARG EMPTY=
ENV A=${NAME#release-} B=${NAME##*.} C=${NAME%.*} D=${NAME%%.*} \\
    E=${NAME/./_} F=${NAME//./_} G=${UNSET-dflt} H=${EMPTY:-dflt} I=[${EMPTY-kept}] \\
    J=${NAME:+set} K=${EMPTY+plus} L=[${UNSET:+no}] M=\\$NAME N='${NAME}'
LABEL v=${NAME#release-} q='${NAME}'
EXPOSE ${PORT:-8080}/${PROTO:-udp}
STOPSIGNAL ${SIG:-SIGQUIT}
VOLUME /${NAME%%-*}
WORKDIR /w/${NAME//./-}
COPY ${SRC:-f.txt} /c/${NAME#*-}
ADD ${SRC:-f.txt} /a/${NAME%%.*}/
COPY --chown=${OWN:-7}:${GRP:-8} --chmod=${MODE:-640} f.txt /owned
COPY --from=first /staged /from-stage
RUN --mount=type=bind,source=${SRC:-f.txt},target=${MNT:-/mnt/f} cp /mnt/f /mounted
ENV OBX=parentenv
ONBUILD WORKDIR /ob/${OBX%env}
USER ${USR:-1000}:${USRGRP:-1001}
"""


def test_expansion_modifiers_in_every_expanding_instruction_and_flags(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    out = build_rootfs(pybuild, tmp_path, MODIFIERS_PARENT, {"f.txt": "file"})
    config = pybuild.config("t:1")
    env = dict(e.split("=", 1) for e in config["Env"])
    assert {k: env[k] for k in "ABCDEFGHIJKLMN"} == {
        "A": "1.2.3",
        "B": "3",
        "C": "release-1.2",
        "D": "release-1",
        "E": "release-1_2.3",
        "F": "release-1_2_3",
        "G": "dflt",
        "H": "dflt",
        "I": "[]",
        "J": "set",
        "K": "plus",
        "L": "[]",
        "M": "$NAME",
        "N": "${NAME}",
    }
    assert config["Labels"] == {"v": "1.2.3", "q": "${NAME}"}
    assert config["ExposedPorts"] == {"8080/udp": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Volumes"] == {"/release": {}}
    assert config["WorkingDir"] == "/w/release-1-2-3"
    assert config["User"] == "1000:1001"
    assert config["OnBuild"] == ["WORKDIR /ob/${OBX%env}"]
    assert (out / "c" / "1.2.3").read_text() == "file"
    assert (out / "a" / "release-1" / "f.txt").read_text() == "file"
    owned = os.lstat(out / "owned")
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (7, 8, 0o640)
    assert (out / "from-stage").read_text() == "staged\n"
    assert (out / "mounted").read_text() == "file"
    # ONBUILD expands in the child, with the parent's ENV.
    child = write_context(tmp_path / "child", {}, "FROM t:1\n")
    pybuild.build(child, "-t", "audit-child:1")
    assert pybuild.config("audit-child:1")["WorkingDir"] == "/ob/parent"


def test_required_variable_modifier_fails_with_line_and_message(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    err = _fail(pybuild, tmp_path, "FROM busybox\nARG NEED\nWORKDIR /${NEED:?set NEED first}\n")
    assert "Dockerfile:3" in err and "set NEED first" in err


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


def test_parser_directives_syntax_check_and_backslash_escape(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    dockerfile = (
        "# syntax=docker/dockerfile:1\n"
        "# check=skip=all\n"
        "# escape=\\\n"
        "FROM busybox\n"
        "# escape=`\n"  # not a directive any more: a comment
        "RUN echo a \\\n"
        "# a comment inside the continuation\n"
        "\n"
        "  b > /x\n"
    )
    out = build_rootfs(pybuild, tmp_path, dockerfile)
    assert (out / "x").read_text() == "a b\n"


def test_directive_after_a_comment_is_only_a_comment(pybuild: Pybuild, tmp_path: Path) -> None:
    # `# escape=`` after another comment does nothing, so the backslash still continues.
    out = build_rootfs(
        pybuild, tmp_path, "# hello\n# escape=`\nFROM busybox\nRUN echo a \\\n b > /x\n"
    )
    assert (out / "x").read_text() == "a b\n"


def test_heredoc_interpreter_and_several_copy_heredocs(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN <<EOF tr a-z A-Z > /upper\n"
        "shout\n"
        "EOF\n"
        "COPY <<one <<'two' /multi/\n"
        "first $HOSTNAME-x\n"
        "one\n"
        "second $HOSTNAME\n"
        "two\n"
    )
    out = build_rootfs(pybuild, tmp_path, dockerfile)
    assert (out / "upper").read_text() == "SHOUT\n"
    assert (out / "multi" / "one").read_text() == "first -x\n"
    assert (out / "multi" / "two").read_text() == "second $HOSTNAME\n"


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


EMPTY_CONTINUATION = "FROM busybox\nRUN echo a \\\n\n  b > /x\n"


def test_empty_continuation_line_warns_and_check_directive_controls_it(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "warn", {}, EMPTY_CONTINUATION)
    warned = pybuild.build(ctx)
    assert "WARNING: " in warned.err and "Dockerfile:4: NoEmptyContinuation" in warned.err
    err = _fail(pybuild, tmp_path / "error", "# check=error=true\n" + EMPTY_CONTINUATION)
    assert "Dockerfile:5" in err and "lint violation found for rules: NoEmptyContinuation" in err
    skipped = write_context(
        tmp_path / "skip", {}, "# check=skip=NoEmptyContinuation;error=true\n" + EMPTY_CONTINUATION
    )
    assert "NoEmptyContinuation" not in pybuild.build(skipped).err
    bad = _fail(pybuild, tmp_path / "bad", "# check=sikp=all\n" + EMPTY_CONTINUATION)
    assert "Dockerfile:1" in bad and "invalid check option 'sikp'" in bad
