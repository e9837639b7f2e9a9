"""What parse_dockerfile refuses: every refusal is a DockerfileError with file and line."""

from __future__ import annotations

import pytest

from builder.errors import DockerfileError
from builder.frontend.dockerfile import parse_dockerfile


def refuse(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(text, file="ctx/Dockerfile")
    assert caught.value.file == "ctx/Dockerfile"
    assert caught.value.line is not None
    return caught.value


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "file with no instructions"),
        ("# only a comment\n\n", 2, "file with no instructions"),
        ("ARG A=1\n", 1, "no stages to build"),
        ("RUN echo\nFROM x\n", 1, "before the first FROM"),
        ("FROM x\nFOO bar\n", 2, "unknown instruction: FOO"),
        ("FROM x\nCOPY --form=a b c\n", 2, "unknown flag: --form"),
        ("FROM x\nCMD --doit echo\n", 2, "unknown flag: --doit"),
        ("FROM x\nRUN --network=none --network=host a\n", 2, "duplicate flag specified: --network"),
        ("FROM x\nCOPY --link=maybe a b\n", 2, "expecting boolean value for flag --link"),
        ("FROM x\nCOPY --link= a b\n", 2, "missing a value on flag: --link"),
        ("FROM x\nCOPY --from a b\n", 2, "missing a value on flag: --from"),
        ("FROM x\nADD --from=y a b\n", 2, "unknown flag: --from"),
        ("FROM x\nRUN --network=bridge a\n", 2, "invalid network mode"),
        ("FROM x\nRUN --security=root a\n", 2, "is not valid"),
        ("FROM x\nCOPY onlyone\n", 2, "requires at least two arguments"),
        ("FROM x\nENV\n", 2, "ENV requires at least one argument"),
        ("FROM x\nENV PATH\n", 2, "ENV must have two arguments"),
        ("FROM x\nENV A=1 B\n", 2, "can't find = in"),
        ("FROM x\nLABEL =v\n", 2, "LABEL names can not be blank"),
        ("FROM x\nARG =v\n", 2, "ARG names can not be blank"),
        ("FROM x\nWORKDIR\n", 2, "WORKDIR requires exactly one argument"),
        ("FROM x\nEXPOSE\n", 2, "EXPOSE requires at least one argument"),
        ('FROM x\nVOLUME [" "]\n', 2, "can not be an empty string"),
        ("FROM x\nSHELL /bin/sh -c\n", 2, "JSON form"),
        ("FROM x\nSHELL []\n", 2, "SHELL requires at least one argument"),
        ('FROM x\nCMD ["a", 1]\n', 2, "strings only"),
        ("FROM\n", 1, "FROM requires either one or three arguments"),
        ("FROM a b\n", 1, "FROM requires either one or three arguments"),
        ("FROM a AS 1st\n", 1, "invalid name for build stage"),
        ("FROM a AS b\nFROM c AS B\n", 2, "duplicate stage name"),
        ("FROM x\nHEALTHCHECK\n", 2, "HEALTHCHECK requires at least one argument"),
        ("FROM x\nHEALTHCHECK CMD\n", 2, "Missing command after HEALTHCHECK CMD"),
        ("FROM x\nHEALTHCHECK NONE x\n", 2, "takes no arguments"),
        ("FROM x\nHEALTHCHECK CONNECT TCP 7000\n", 2, "Unknown type"),
        ("FROM x\nHEALTHCHECK --interval=5 CMD a\n", 2, "invalid duration"),
        ("FROM x\nHEALTHCHECK --timeout=10us CMD a\n", 2, "cannot be less than 1ms"),
        ("FROM x\nHEALTHCHECK --retries=-1 CMD a\n", 2, "cannot be negative"),
        ("FROM x\nONBUILD ONBUILD RUN a\n", 2, "Chaining ONBUILD"),
        ("FROM x\nONBUILD FROM y\n", 2, "isn't allowed as an ONBUILD trigger"),
        ("# escape=x\nFROM x\n", 1, "invalid escape token"),
        ("# escape=`\n# escape=\\\nFROM x\n", 2, "only one escape parser directive"),
        ("FROM x\nRUN a \\\n  b \\\n  c\nRUN <<EOF\n", 5, "unterminated heredoc"),
        ("FROM x\nLABEL a=" + "b" * 70000 + "\n", 2, "max allowed size of 65535"),
    ],
)
def test_refusal_names_the_problem_and_line(text: str, line: int, message: str) -> None:
    err = refuse(text)
    assert message in err.message
    assert err.line == line


def test_unknown_instruction_suggests_the_closest_keyword() -> None:
    err = refuse("FROM x\nRUNN echo\n")
    assert err.hint == "did you mean RUN?"


def test_unknown_flag_hint_lists_the_accepted_flags() -> None:
    err = refuse("FROM x\nCOPY --form=a b c\n")
    assert err.hint is not None and "--from" in err.hint and "--chown" in err.hint


def test_flag_error_in_a_continued_instruction_points_at_its_first_line() -> None:
    err = refuse("FROM x\n\nCOPY \\\n  --bad \\\n  a b\n")
    assert err.line == 3


def test_dangling_continuation_at_end_of_file_is_refused() -> None:
    err = refuse("FROM x\n\\\n")
    assert "unknown instruction" in err.message
