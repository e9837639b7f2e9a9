"""builder.frontend.expand: BuildKit's word expansion, beyond the upstream vectors."""

from __future__ import annotations

import pytest

from builder.errors import DockerfileError
from builder.frontend.expand import (
    ShellLexer,
    env_from_list,
    expand_word,
    expand_word_tracked,
    expand_words,
    go_trim_space,
)


def test_backtick_escape_replaces_backslash() -> None:
    env = {"A": "x"}
    assert expand_word("C:\\dir\\$A", env, escape="`") == "C:\\dir\\x"
    assert expand_word("`$A", env, escape="`") == "$A"
    assert expand_word('"a`"b"', env, escape="`") == 'a"b'


def test_unquoted_variable_values_split_into_words_but_quoted_ones_do_not() -> None:
    env = {"V": "a  b"}
    assert expand_words("x$V y", env) == ["xa", "b", "y"]
    assert expand_words('x"$V" y', env) == ["xa  b", "y"]
    assert expand_word("x$V y", env) == "xa  b y"


def test_empty_quoted_word_vanishes_from_words() -> None:
    assert expand_words('a "" b', {}) == ["a", "b"]


def test_required_variable_error_carries_message_and_hint_but_no_location() -> None:
    with pytest.raises(DockerfileError) as caught:
        expand_word("${VERSION:?set VERSION}", {"VERSION": ""})
    err = caught.value
    assert "VERSION: set VERSION" in err.message
    assert err.line is None and err.file is None
    assert err.hint is not None and "--build-arg VERSION=" in err.hint
    assert err.located("Dockerfile", 7) is err and err.line == 7


def test_unset_required_variable_default_message() -> None:
    with pytest.raises(DockerfileError, match="V: is not allowed to be unset"):
        expand_word("${V?}", {})


def test_tracking_reports_variables_looked_up() -> None:
    result = expand_word_tracked("${A:-$B} $C", {"A": "", "C": "c"})
    assert result.text == " c"
    assert result.matched == {"A", "C"}
    assert result.unmatched == {"B"}


def test_replace_all_with_a_pattern_matching_everything_replaces_once() -> None:
    # Go skips the empty match right after a match; Python's re.sub would give "xx".
    assert expand_word("${V//*/x}", {"V": "abc"}) == "x"
    assert expand_word("${V/b*/-}", {"V": "abc"}) == "a-"


def test_prefix_and_suffix_removal() -> None:
    env = {"P": "dir/sub/file.tar.gz"}
    assert expand_word("${P#*/}", env) == "sub/file.tar.gz"
    assert expand_word("${P##*/}", env) == "file.tar.gz"
    assert expand_word("${P%.*}", env) == "dir/sub/file.tar"
    assert expand_word("${P%%.*}", env) == "dir/sub/file"


def test_bad_pattern_escape_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="invalid escape"):
        expand_word("${P#\\a}", {"P": "x"})


def test_skip_unset_keeps_references_as_written() -> None:
    lexer = ShellLexer(skip_unset=True)
    assert lexer.process("$A ${B} ${C:-x} ${D/a/b}", {}).text == "$A ${B} ${C:-x} ${D/a/b}"


def test_raw_quotes_and_escapes_keep_the_word_as_written() -> None:
    lexer = ShellLexer(raw_quotes=True, raw_escapes=True)
    assert lexer.process('\'a b\' "c\\"d" e\\ f', {}).words == ("'a b'", '"c\\"d"', "e\\ f")


def test_heredoc_marker_keeps_following_blanks_in_its_word() -> None:
    assert expand_words("RUN <<- EOF cat", {}) == ["RUN", "<<- EOF", "cat"]


def test_deep_nesting_is_a_dockerfile_error() -> None:
    with pytest.raises(DockerfileError, match="nested too deeply"):
        expand_word("${a:-" * 5000 + "}" * 5000, {})


def test_env_from_list_last_entry_wins_and_bare_names_are_empty() -> None:
    assert env_from_list(["A=1", "B", "A=2=3"]) == {"A": "2=3", "B": ""}


def test_go_trim_space_uses_go_white_space() -> None:
    assert go_trim_space("\u00a0\t x \u3000") == "x"
    assert go_trim_space("\x1cx") == "\x1cx"  # Python's strip() would remove it
