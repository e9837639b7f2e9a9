"""Builds through the CLI, checking the resulting rootfs and config for each instruction."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, build_rootfs, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def test_run_shell_form_writes_file_into_image(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(pybuild, tmp_path, "FROM busybox\nRUN echo hello > /greeting\n")
    assert (root / "greeting").read_text() == "hello\n"
    assert (root / "bin" / "busybox").exists()


def test_run_exec_form_runs_without_shell(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild, tmp_path, 'FROM busybox\nRUN ["/bin/sh", "-c", "echo $0 > /out", "literal"]\n'
    )
    assert (root / "out").read_text() == "literal\n"


def test_copy_dir_copies_contents_not_dir(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild, tmp_path, "FROM busybox\nCOPY src /dst\n", {"src/a.txt": "a", "src/sub/b.txt": "b"}
    )
    assert (root / "dst" / "a.txt").read_text() == "a"
    assert (root / "dst" / "sub" / "b.txt").read_text() == "b"
    assert not (root / "dst" / "src").exists()


def test_copy_file_to_trailing_slash_lands_inside_dir(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild, tmp_path, "FROM busybox\nCOPY f.txt /new/\nCOPY f.txt /renamed\n", {"f.txt": "x"}
    )
    assert (root / "new" / "f.txt").read_text() == "x"
    assert (root / "renamed").read_text() == "x"


def test_copy_wildcard_copies_every_match_into_a_dir_dest(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild,
        tmp_path,
        "FROM busybox\nCOPY *.py /app/\n",
        {"a.py": "1", "b.py": "2", "c.txt": "3"},
    )
    assert sorted(p.name for p in (root / "app").iterdir()) == ["a.py", "b.py"]


def test_copy_keeps_mode_and_sets_root_owner(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"run.sh": "#!/bin/sh\n"}, "FROM busybox\nCOPY run.sh /\n"
    )
    os.chmod(ctx / "run.sh", 0o751)
    os.chown(ctx / "run.sh", 1234, 1234)
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    st = os.lstat(out / "run.sh")
    assert stat.S_IMODE(st.st_mode) == 0o751
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_copy_chown_by_name_resolves_from_image_passwd(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild, tmp_path, "FROM busybox\nCOPY --chown=app:app d /opt/d\n", {"d/f": "x"}
    )
    for path in (root / "opt" / "d", root / "opt" / "d" / "f"):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_dockerignore_excludes_files_from_copy(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild,
        tmp_path,
        "FROM busybox\nCOPY . /app/\n",
        {
            ".dockerignore": "*.log\nsecret/\n!keep.log\n",
            "a.txt": "a",
            "x.log": "no",
            "keep.log": "yes",
            "secret/key": "k",
        },
    )
    names = sorted(p.name for p in (root / "app").iterdir())
    assert "a.txt" in names and "keep.log" in names
    assert "x.log" not in names and "secret" not in names


def test_missing_copy_source_names_the_path(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nCOPY nothere.txt /\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code != 0
    assert "nothere.txt" in result.err
    assert "Dockerfile:2" in result.err
    assert "Traceback" not in result.err


def test_add_local_file_copies_it(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild, tmp_path, "FROM busybox\nADD notes.txt /srv/\n", {"notes.txt": "n"}
    )
    assert (root / "srv" / "notes.txt").read_text() == "n"


def test_env_both_forms_reach_run_and_config(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild,
        tmp_path,
        'FROM busybox\nENV A 1\nENV B="two words" C=$A-x\nRUN echo "$A|$B|$C" > /env\n',
    )
    assert (root / "env").read_text() == "1|two words|1-x\n"
    env = pybuild.config("t:1")["Env"]
    assert "A=1" in env and "B=two words" in env and "C=1-x" in env
    assert any(e.startswith("PATH=") for e in env)


def test_arg_build_arg_overrides_default_and_is_not_in_config(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    root = build_rootfs(
        pybuild,
        tmp_path,
        "FROM busybox\nARG V=default\nARG W=w\nRUN echo $V $W > /v\n",
        None,
        "--build-arg",
        "V=given",
    )
    assert (root / "v").read_text() == "given w\n"
    assert not any(e.startswith("V=") for e in pybuild.config("t:1")["Env"])


def test_global_arg_is_only_visible_in_stage_after_redeclare(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    dockerfile = (
        "ARG BASE=busybox\nARG G=global\nFROM $BASE\n"
        'RUN echo "[$G]" > /before\nARG G\nRUN echo "[$G]" > /after\n'
    )
    root = build_rootfs(pybuild, tmp_path, dockerfile)
    assert (root / "before").read_text() == "[]\n"
    assert (root / "after").read_text() == "[global]\n"


def test_workdir_creates_directory_and_sets_cwd(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild, tmp_path, "FROM busybox\nWORKDIR /a/b\nWORKDIR c\nRUN pwd > here\n"
    )
    assert (root / "a" / "b" / "c" / "here").read_text() == "/a/b/c\n"
    assert pybuild.config("t:1")["WorkingDir"] == "/a/b/c"


def test_user_owns_files_created_by_run(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(
        pybuild, tmp_path, "FROM busybox\nUSER app\nRUN touch /tmp/mine && id -u > /tmp/uid\n"
    )
    st = os.lstat(root / "tmp" / "mine")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert (root / "tmp" / "uid").read_text() == "1000\n"
    assert pybuild.config("t:1")["User"] == "app"


def test_metadata_instructions_land_in_config(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        'LABEL a=1 "b c"="d e"\n'
        "EXPOSE 80 53/udp\n"
        'VOLUME ["/data"]\n'
        "STOPSIGNAL SIGINT\n"
        'SHELL ["/bin/sh", "-ec"]\n'
        'ENTRYPOINT ["/bin/echo"]\n'
        "CMD hi there\n"
    )
    build_rootfs(pybuild, tmp_path, dockerfile)
    config = pybuild.config("t:1")
    assert config["Labels"] == {"a": "1", "b c": "d e"}
    assert set(config["ExposedPorts"]) == {"80/tcp", "53/udp"}
    assert set(config["Volumes"]) == {"/data"}
    assert config["StopSignal"] == "SIGINT"
    assert config["Shell"] == ["/bin/sh", "-ec"]
    assert config["Entrypoint"] == ["/bin/echo"]
    assert config["Cmd"] == ["/bin/sh", "-ec", "hi there"]


def test_entrypoint_clears_inherited_cmd(pybuild: Pybuild, tmp_path: Path) -> None:
    build_rootfs(pybuild, tmp_path, 'FROM busybox\nENTRYPOINT ["/bin/true"]\n')
    config = pybuild.config("t:1")
    assert config["Entrypoint"] == ["/bin/true"]
    assert "Cmd" not in config


def test_history_marks_metadata_steps_empty(pybuild: Pybuild, tmp_path: Path) -> None:
    build_rootfs(pybuild, tmp_path, "FROM busybox\nENV X=1\nRUN echo > /f\n")
    image = pybuild.inspect("t:1")
    history = image["Config"]["history"]
    base_len = len(history) - 2
    assert history[base_len]["empty_layer"] is True and history[base_len]["created_by"] == "ENV X=1"
    assert "empty_layer" not in history[base_len + 1]
    assert len(image["Config"]["rootfs"]["diff_ids"]) == len(image["Manifest"]["layers"])


def test_from_scratch_with_copy_only(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(pybuild, tmp_path, "FROM scratch\nCOPY f /f\n", {"f": "only"})
    assert sorted(p.name for p in root.iterdir()) == ["f"]


def test_multistage_copy_from_named_stage(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox AS build\nRUN mkdir /out && echo built > /out/artifact\n"
        "FROM busybox AS unused\nRUN exit 1\n"
        "FROM scratch\nCOPY --from=build /out/artifact /artifact\n"
        "COPY --from=0 /bin/busybox /bin/busybox\n"
    )
    root = build_rootfs(pybuild, tmp_path, dockerfile)
    assert (root / "artifact").read_text() == "built\n"
    assert (root / "bin" / "busybox").stat().st_size > 100_000


def test_target_builds_only_needed_stage(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = "FROM busybox AS one\nRUN echo 1 > /one\nFROM busybox AS two\nRUN exit 7\n"
    root = build_rootfs(pybuild, tmp_path, dockerfile, None, "--target", "one")
    assert (root / "one").read_text() == "1\n"


def test_failing_run_shows_command_output_and_status(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN echo about-to-fail && exit 3\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code != 0
    assert "exit code 3" in result.err
    assert "about-to-fail" in result.err
    assert "echo about-to-fail" in result.err
    assert "Dockerfile:2" in result.err
    assert "Traceback" not in result.err


def test_unknown_base_image_says_how_to_get_one(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM nosuch:1\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code != 0
    assert "nosuch:1" in result.err and "pybuild load" in result.err
    assert "Traceback" not in result.err


def test_unsupported_instruction_names_it_and_line(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx", {}, "FROM busybox\nRUN true\nRUN --mount=type=nfs,target=/c true\n"
    )
    result = pybuild.build(ctx, ok=False)
    assert result.code != 0
    assert '"nfs"' in result.err and "Dockerfile:3" in result.err


HEREDOC_DOCKERFILE = """\
FROM busybox
RUN <<EOF
echo hi > /one
echo there >> /one
EOF
RUN cat <<-A > /x && cat <<'B' > /y
\thello $HOME
A
raw $HOME
B
RUN <<EOT
#!/bin/sh
echo "script $0" > /script-ran
EOT
"""


def test_run_heredocs_follow_buildkit_forms(pybuild: Pybuild, tmp_path: Path) -> None:
    root = build_rootfs(pybuild, tmp_path, HEREDOC_DOCKERFILE)
    assert (root / "one").read_text() == "hi\nthere\n"
    assert (root / "x").read_text() == "hello /root\n"
    assert (root / "y").read_text() == "raw $HOME\n"
    assert (root / "script-ran").read_text() == "script /dev/pipes/EOT\n"
    assert not (root / "dev" / "pipes").exists()


def test_undeclared_build_arg_warns_and_names_only_the_unused(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nARG USED\nRUN echo $USED > /u\n")
    result = pybuild.build(ctx, "--build-arg", "USED=1", "--build-arg", "NOPE=2")
    assert "WARNING: build-args not consumed by any ARG: NOPE\n" in result.err


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
