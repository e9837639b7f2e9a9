"""Property: any text, however broken, parses or fails with a located DockerfileError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import DockerfileError
from builder.frontend.dockerfile import parse_dockerfile

TESTFILES = (
    Path(__file__).parents[2].parent
    / "shared"
    / "conformance"
    / "buildkit-dockerfile-parser"
    / "testfiles"
)
SEEDS = [
    "FROM alpine AS base\nRUN <<EOF\necho hi\nEOF\nCOPY --from=base <<-X /x\n\tdata\n\tX\n",
    '# escape=`\nFROM x\nENV A=1 B="2 3" `\n  C=4\nCMD ["a"]\n',
    "ARG V=1\nFROM scratch\nHEALTHCHECK --interval=5s CMD true\nONBUILD RUN a\n",
]
if TESTFILES.is_dir():
    SEEDS += [(d / "Dockerfile").read_bytes().decode("utf-8") for d in sorted(TESTFILES.iterdir())]

KEYWORDS = [
    "FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "LABEL", "CMD", "ENTRYPOINT", "SHELL",
    "HEALTHCHECK", "ONBUILD", "WORKDIR", "USER", "VOLUME", "EXPOSE", "STOPSIGNAL",
    "MAINTAINER", "from", "Run", "FOO", "",
]  # fmt: skip
PIECES = [
    "--link", "--from=a", "--mount=type=cache", "--network=none", "--", "--x='a b'",
    "<<EOF", "<<-'X'", '3<<"Y"', "EOF", "X", "\tX", "\\", "`", '"', "'", "[", "]",
    '["a", "b"]', "[1]", "[]", "${A:-b}", "${A", "$", "=", "a=b", "AS", "as", "n-1",
    "#", "# escape=`", "# syntax=x", "# check=skip=all", "NONE", "CMD", "\ufeff", "\r",
    "é", "\x00", "{", "}", "5s", "--interval=0", "--retries=-1",
]  # fmt: skip
words = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=6).map(" ".join)
lines = st.one_of(
    st.tuples(st.sampled_from(KEYWORDS), words).map(" ".join),
    words,
    st.sampled_from(["", "EOF", "\tX", "\\", "  \\  ", "# c"]),
)
dockerfiles = st.lists(lines, max_size=12).map("\n".join)


def check(text: str) -> None:
    """Parse ``text``: success gives in-range locations, failure a located DockerfileError."""
    last_line = text.count("\n") + 1
    try:
        df = parse_dockerfile(text, file="fuzz/Dockerfile")
    except DockerfileError as err:
        assert err.file == "fuzz/Dockerfile"
        assert err.line is not None and 1 <= err.line <= last_line, err
        return
    assert df.stages
    for stage in df.stages:
        for instruction in (stage.base, *stage.instructions):
            location = instruction.location
            assert 1 <= location.line <= location.end_line <= last_line


@settings(max_examples=100, deadline=None)
@given(dockerfiles)
def test_random_dockerfiles_parse_or_fail_with_a_line(text: str) -> None:
    check(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        insert = draw(st.sampled_from(PIECES) | st.sampled_from(["\n", "\\\n", "<<EOF\n"]))
        cut = draw(st.integers(0, 3))
        text = text[:pos] + insert + text[pos + cut :]
    return text


@settings(max_examples=100, deadline=None)
@given(mutated())
def test_mutated_dockerfiles_parse_or_fail_with_a_line(text: str) -> None:
    check(text)
