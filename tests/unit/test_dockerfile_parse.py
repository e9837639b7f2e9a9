"""parse_dockerfile: stages and typed instructions from Dockerfile text."""

from __future__ import annotations

import pytest

from builder.frontend.convert import handled_instructions
from builder.frontend.dockerfile import parse_dockerfile
from builder.frontend.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    Label,
    Location,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from builder.frontend.nodes import KNOWN_INSTRUCTIONS


def only(text: str) -> Instruction:
    """The single instruction after ``FROM scratch``."""
    (instruction,) = parse_dockerfile("FROM scratch\n" + text).stages[0].instructions
    return instruction


def test_stages_are_split_at_from_and_names_lower_cased() -> None:
    df = parse_dockerfile("FROM alpine AS Build\nRUN make\nFROM scratch\nCOPY --from=build /a /a\n")
    assert [s.index for s in df.stages] == [0, 1]
    assert df.stages[0].name == "build"
    assert df.stages[0].base == From(Location("Dockerfile", 1, 1), "FROM alpine AS Build",
                                     "alpine", "build", None)  # fmt: skip
    assert df.stages[1].name is None
    assert [type(i) for i in df.stages[0].instructions] == [Run]
    assert isinstance(df.stages[1].instructions[0], Copy)


def test_args_before_the_first_from_are_global() -> None:
    df = parse_dockerfile("ARG BASE=alpine\nARG TAG\nFROM $BASE:$TAG\nARG TAG\n")
    assert [a.args for a in df.global_args] == [(("BASE", "alpine"),), (("TAG", None),)]
    assert df.stages[0].base.image == "$BASE:$TAG"
    assert df.stages[0].instructions == (
        Arg(Location("Dockerfile", 4, 4), "ARG TAG", (("TAG", None),)),
    )


def test_from_platform_flag_is_kept_raw() -> None:
    base = parse_dockerfile("FROM --platform=$BUILDPLATFORM golang AS b\n").stages[0].base
    assert (base.image, base.name, base.platform) == ("golang", "b", "$BUILDPLATFORM")


def test_run_shell_form_keeps_the_raw_script() -> None:
    run = only('RUN --mount=type=cache,target=/root/.cache echo "$HOME" \\\n  && ls\n')
    assert isinstance(run, Run)
    assert run.command == ('echo "$HOME"   && ls',)
    assert run.shell_form
    assert run.mounts == ("type=cache,target=/root/.cache",)
    assert (run.network, run.security, run.heredocs) == (None, None, ())


def test_run_exec_form_and_repeated_mounts() -> None:
    run = only('RUN --mount=type=secret,id=a --mount=type=ssh --network=none ["make", "all"]\n')
    assert isinstance(run, Run)
    assert (run.command, run.shell_form) == (("make", "all"), False)
    assert run.mounts == ("type=secret,id=a", "type=ssh")
    assert run.network == "none"


def test_copy_flags() -> None:
    flags = "--from=build --chown=1:2 --chmod=0755 --link --parents --exclude=*.md --exclude=x"
    copy = only(f"COPY {flags} a b /dst/\n")
    assert isinstance(copy, Copy) and not isinstance(copy, Add)
    assert copy.sources == ("a", "b") and copy.dest == "/dst/"
    assert (copy.from_, copy.chown, copy.chmod) == ("build", "1:2", "0755")
    assert copy.link and copy.parents
    assert copy.excludes == ("*.md", "x")


def test_copy_json_form_keeps_spaces_in_paths() -> None:
    copy = only('COPY ["my file", "/dest dir/"]\n')
    assert isinstance(copy, Copy)
    assert (copy.sources, copy.dest) == (("my file",), "/dest dir/")
    assert (copy.from_, copy.link, copy.excludes) == (None, False, ())


def test_add_flags_and_unpack_three_states() -> None:
    add = only("ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false https://x/y.tgz /y\n")
    assert isinstance(add, Add)
    assert add.checksum == "sha256:abc" and add.keep_git_dir
    assert add.unpack is False
    plain = only("ADD a.tgz /\n")
    assert isinstance(plain, Add) and plain.unpack is None and plain.from_ is None


def test_env_old_and_new_forms_keep_raw_values() -> None:
    df = parse_dockerfile('FROM x\nENV A  hello world\nENV B="x y" C=$A\\ z\n')
    first, second = df.stages[0].instructions
    assert isinstance(first, Env) and first.pairs == (("A", "hello world"),)
    assert isinstance(second, Env) and second.pairs == (("B", '"x y"'), ("C", "$A\\ z"))


def test_label_pairs() -> None:
    label = only('LABEL org.opencontainers.image.title="my app" version=1\n')
    assert isinstance(label, Label)
    assert label.pairs == (("org.opencontainers.image.title", '"my app"'), ("version", "1"))


def test_arg_distinguishes_no_default_from_empty_default() -> None:
    arg = only('ARG A B= C="x y"\n')
    assert isinstance(arg, Arg)
    assert arg.args == (("A", None), ("B", ""), ("C", '"x y"'))


def test_cmd_and_entrypoint_forms() -> None:
    df = parse_dockerfile('FROM x\nCMD ["a", "b"]\nCMD echo hi\nCMD []\nENTRYPOINT exec me\n')
    cmd1, cmd2, cmd3, entry = df.stages[0].instructions
    assert cmd1 == Cmd(Location("Dockerfile", 2, 2), 'CMD ["a", "b"]', ("a", "b"), False)
    assert isinstance(cmd2, Cmd) and (cmd2.command, cmd2.shell_form) == (("echo hi",), True)
    assert isinstance(cmd3, Cmd) and (cmd3.command, cmd3.shell_form) == ((), False)
    assert isinstance(entry, Entrypoint) and entry.command == ("exec me",) and entry.shell_form


def test_shell_instruction_takes_json() -> None:
    shell = only('SHELL ["/bin/bash", "-eo", "pipefail", "-c"]\n')
    assert isinstance(shell, Shell) and shell.shell == ("/bin/bash", "-eo", "pipefail", "-c")


L2 = Location("Dockerfile", 2, 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("WORKDIR /app\n", Workdir(L2, "WORKDIR /app", "/app")),
        ("USER 1000:1000\n", User(L2, "USER 1000:1000", "1000:1000")),
        ("STOPSIGNAL SIGTERM\n", StopSignal(L2, "STOPSIGNAL SIGTERM", "SIGTERM")),
        ("MAINTAINER Jo Doe\n", Maintainer(L2, "MAINTAINER Jo Doe", "Jo Doe")),
        ("EXPOSE 80/tcp 53/udp\n", Expose(L2, "EXPOSE 80/tcp 53/udp", ("80/tcp", "53/udp"))),
        ('VOLUME ["/a", "/b"]\n', Volume(L2, 'VOLUME ["/a", "/b"]', ("/a", "/b"))),
        ("VOLUME /a /b\n", Volume(L2, "VOLUME /a /b", ("/a", "/b"))),
    ],
)
def test_single_value_instructions(text: str, expected: Instruction) -> None:
    assert only(text) == expected


def test_healthcheck_forms() -> None:
    df = parse_dockerfile(
        "FROM x\nHEALTHCHECK NONE\n"
        "HEALTHCHECK --interval=5s --timeout=1m30s --start-period=0 --retries=3 CMD curl -f x\n"
        'HEALTHCHECK --start-interval=100ms CMD ["curl", "x"]\n'
    )
    none, shell, exec_ = df.stages[0].instructions
    assert isinstance(none, Healthcheck) and none.test is None
    assert isinstance(shell, Healthcheck) and shell.test == ("CMD-SHELL", "curl -f x")
    assert (shell.interval, shell.timeout, shell.start_period, shell.retries) == (
        "5s",
        "1m30s",
        "0",
        "3",
    )
    assert isinstance(exec_, Healthcheck) and exec_.test == ("CMD", "curl", "x")
    assert exec_.start_interval == "100ms" and exec_.interval is None


def test_onbuild_keeps_the_trigger_text() -> None:
    onbuild = only("ONBUILD RUN echo built\n")
    assert isinstance(onbuild, Onbuild) and onbuild.trigger == "RUN echo built"


def test_onbuild_keeps_heredoc_bodies_with_the_trigger() -> None:
    onbuild = only("ONBUILD COPY <<EOF /f\nhello\nEOF\n")
    assert isinstance(onbuild, Onbuild)
    assert onbuild.trigger == "COPY <<EOF /f\nhello\nEOF"


def test_locations_span_continuations_and_originals_join_them() -> None:
    df = parse_dockerfile(
        "# comment\n\nFROM x\nRUN a \\\n  # inner comment\n  b\nUSER me\n", file="df"
    )
    run, user = df.stages[0].instructions
    assert run.location == Location("df", 4, 6)
    assert run.original == "RUN a   b"
    assert user.location == Location("df", 7, 7)


def test_escape_directive_switches_to_backtick() -> None:
    df = parse_dockerfile("# escape=`\nFROM x\nRUN dir C:\\ `\n  && echo\n")
    (run,) = df.stages[0].instructions
    assert df.escape == "`"
    assert df.directives == (("escape", "`"),)
    assert isinstance(run, Run) and run.command == ("dir C:\\   && echo",)


def test_directives_are_recorded_in_order() -> None:
    df = parse_dockerfile("# syntax=docker/dockerfile:1\n# check=skip=all\nFROM x\n")
    assert df.directives == (("syntax", "docker/dockerfile:1"), ("check", "skip=all"))
    assert df.escape == "\\"


def test_directive_after_a_comment_is_just_a_comment() -> None:
    df = parse_dockerfile("# hello\n# escape=`\nFROM x\nRUN a `\n")
    assert df.directives == () and df.escape == "\\"


def test_empty_continuation_line_is_accepted_with_a_warning() -> None:
    df = parse_dockerfile("FROM x\nRUN a \\\n\n  b\n")
    (run,) = df.stages[0].instructions
    assert isinstance(run, Run) and run.command == ("a   b",)
    assert len(df.warnings) == 1 and "Empty continuation line" in df.warnings[0].message


def test_bom_and_crlf_line_endings_are_accepted() -> None:
    df = parse_dockerfile("\ufeffFROM x\r\nRUN a \\\r\n  b\r\nCMD c\r\n")
    run, cmd = df.stages[0].instructions
    assert isinstance(run, Run) and run.command == ("a   b",)
    assert isinstance(cmd, Cmd) and cmd.command == ("c",)


def test_keywords_are_case_insensitive() -> None:
    df = parse_dockerfile("from alpine as Base\nrun echo\n")
    assert df.stages[0].name == "base"
    assert isinstance(df.stages[0].instructions[0], Run)


def test_every_keyword_the_parser_knows_becomes_an_instruction() -> None:
    assert handled_instructions() == KNOWN_INSTRUCTIONS
    samples = {
        "add": Add, "arg": Arg, "cmd": Cmd, "copy": Copy, "entrypoint": Entrypoint,
        "env": Env, "expose": Expose, "healthcheck": Healthcheck, "label": Label,
        "maintainer": Maintainer, "onbuild": Onbuild, "run": Run, "shell": Shell,
        "stopsignal": StopSignal, "user": User, "volume": Volume, "workdir": Workdir,
    }  # fmt: skip
    args = {
        "shell": '["sh"]',
        "healthcheck": "NONE",
        "onbuild": "RUN x",
        "env": "a=b",
        "label": "a=b",
    }
    for keyword, kind in samples.items():
        instruction = only(f"{keyword} {args.get(keyword, 'a b')}\n")
        assert type(instruction) is kind, keyword
    assert set(samples) | {"from"} == KNOWN_INSTRUCTIONS
