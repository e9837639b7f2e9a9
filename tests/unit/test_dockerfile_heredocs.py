"""Heredocs in RUN, COPY and ADD: bodies, tab stripping, quoting, several per line."""

from __future__ import annotations

import pytest

from builder.errors import DockerfileError
from builder.frontend.dockerfile import parse_dockerfile
from builder.frontend.instructions import Copy, Heredoc, Location, Run


def instructions(text: str) -> tuple[object, ...]:
    return parse_dockerfile("FROM scratch\n" + text).stages[0].instructions


def test_run_heredoc_body_is_attached_and_marker_left_in_script() -> None:
    (run,) = instructions("RUN <<EOF\necho $HOME\n# not a comment\nEOF\n")
    assert isinstance(run, Run)
    assert run.command == ("<<EOF",) and run.shell_form
    assert run.heredocs == (Heredoc("EOF", "echo $HOME\n# not a comment\n", True),)
    assert run.location == Location("Dockerfile", 2, 5)


def test_dash_heredoc_strips_leading_tabs_and_accepts_indented_terminator() -> None:
    (run,) = instructions("RUN <<-EOF\n\techo a\n\t\techo b\n\tEOF\n")
    assert isinstance(run, Run)
    assert run.heredocs == (Heredoc("EOF", "echo a\necho b\n", True),)


def test_plain_heredoc_keeps_tabs() -> None:
    (run,) = instructions("RUN <<EOF\n\techo a\nEOF\n")
    assert isinstance(run, Run) and run.heredocs[0].content == "\techo a\n"


@pytest.mark.parametrize("marker", ["<<'EOF'", '<<"EOF"', "<<E'O'F", "<<-'EOF'"])
def test_quoted_delimiter_turns_expansion_off(marker: str) -> None:
    (run,) = instructions(f"RUN {marker}\necho $HOME\nEOF\n")
    assert isinstance(run, Run)
    assert run.heredocs == (Heredoc("EOF", "echo $HOME\n", False),)


def test_heredoc_with_interpreter_after_the_marker() -> None:
    (run,) = instructions("RUN <<EOF python3\nprint('hi')\nEOF\nUSER me\n")[:1]
    assert isinstance(run, Run)
    assert run.command == ("<<EOF python3",)
    assert run.heredocs == (Heredoc("EOF", "print('hi')\n", True),)


def test_several_heredocs_on_one_line_are_read_in_order() -> None:
    (run,) = instructions("RUN <<A cat /dev/stdin <<B\none\nA\ntwo\nB\n")
    assert isinstance(run, Run)
    assert [(d.name, d.content) for d in run.heredocs] == [("A", "one\n"), ("B", "two\n")]


def test_copy_heredoc_sources_are_files_not_paths() -> None:
    (copy,) = instructions(
        "COPY --chmod=755 <<one.sh plain.txt <<two.sh /dest/\nA\none.sh\nB\ntwo.sh\n"
    )
    assert isinstance(copy, Copy)
    assert copy.sources == ("plain.txt",) and copy.dest == "/dest/"
    assert copy.heredocs == (Heredoc("one.sh", "A\n", True), Heredoc("two.sh", "B\n", True))
    assert copy.chmod == "755"


def test_heredoc_is_not_a_destination() -> None:
    with pytest.raises(DockerfileError, match="cannot accept a heredoc as a destination") as err:
        parse_dockerfile("FROM x\nCOPY a <<EOF\nx\nEOF\n")
    assert err.value.line == 2


def test_unterminated_heredoc_is_an_error_at_its_instruction() -> None:
    with pytest.raises(DockerfileError, match="unterminated heredoc") as err:
        parse_dockerfile("FROM x\nRUN <<EOF\necho\n")
    assert err.value.line == 2 and err.value.hint


def test_json_form_and_other_instructions_take_no_heredocs() -> None:
    df = parse_dockerfile('FROM x\nRUN ["echo", "<<EOF"]\nUSER <<EOF\n')
    run, user = df.stages[0].instructions
    assert isinstance(run, Run) and run.heredocs == () and run.command == ("echo", "<<EOF")
    assert user.original == "USER <<EOF"


def test_heredoc_bodies_are_not_instructions_or_continuations() -> None:
    text = "RUN <<EOF\nFROM nothing \\\nEOF\nUSER me\n"
    run, user = instructions(text)
    assert isinstance(run, Run) and run.heredocs[0].content == "FROM nothing \\\n"
    assert user.location.line == 5
