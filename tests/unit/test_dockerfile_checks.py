"""The # check= directive: parsing and how it filters the parser's warnings."""

from __future__ import annotations

import pytest

from builder.errors import DockerfileError
from builder.frontend.checks.directive import CheckOptions, check_warnings, parse_check
from builder.frontend.dockerfile import parse_dockerfile

BODY = "FROM busybox\nRUN echo a \\\n\n  b\n"


def test_parse_check_reads_skip_list_and_error_flag() -> None:
    assert parse_check("skip=A, B;error=true", "D") == CheckOptions(
        frozenset({"A", "B"}), False, True
    )
    assert parse_check(" skip=all ", "D") == CheckOptions(skip_all=True)
    assert parse_check("", "D") == CheckOptions()


@pytest.mark.parametrize("value", ["skip", "error=maybe", "warn=true"])
def test_parse_check_refuses_malformed_values_at_line_one(value: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse_check(value, "Dockerfile")
    assert info.value.line == 1 and info.value.hint


def test_empty_continuation_is_a_located_warning() -> None:
    (warning,) = check_warnings(parse_dockerfile(BODY, "Dockerfile"))
    assert warning.startswith("Dockerfile:4: NoEmptyContinuation: Empty continuation line")


def test_error_true_turns_the_warning_into_an_error() -> None:
    with pytest.raises(DockerfileError, match="lint violation found for rules"):
        check_warnings(parse_dockerfile("# check=error=true\n" + BODY, "Dockerfile"))


def test_skipped_rule_gives_no_warning_even_with_error_true() -> None:
    df = parse_dockerfile("# check=skip=NoEmptyContinuation;error=true\n" + BODY, "Dockerfile")
    assert check_warnings(df) == ()


def test_check_comment_above_an_instruction_skips_only_there() -> None:
    from builder.frontend.checks.inline import skipped_here

    lines = ["FROM x", "# check=skip=A,B // why", "", "CMD a", "CMD b", "#", "# other", "CMD c"]
    assert skipped_here(lines, 4, "B")
    assert not skipped_here(lines, 4, "C")
    assert not skipped_here(lines, 5, "A")
    assert not skipped_here(["# check=skip=all", "#", "CMD a"], 3, "A")
    assert skipped_here(["# check=skip=all", "CMD a"], 2, "Anything")
