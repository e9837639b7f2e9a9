"""Behaviour of .dockerignore reading and matching (builder/frontend/dockerignore.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import BuildError
from builder.frontend.dockerignore import (
    Glob,
    PatternMatcher,
    clean_path,
    has_wildcards,
    read_ignore_file,
)


def test_read_ignore_file_drops_comments_blank_lines_and_leading_slash() -> None:
    text = "# comment\n\n  /build/  \nsrc//x/../y\n! /keep.txt\n"
    assert read_ignore_file(text) == ["build", "src/y", "!keep.txt"]


def test_read_ignore_file_comment_only_when_hash_starts_the_line() -> None:
    assert read_ignore_file("  # not a comment\n#comment") == ["# not a comment"]


def test_read_ignore_file_strips_bom_and_carriage_returns() -> None:
    assert read_ignore_file("\ufeffa\r\nb\r\n") == ["a", "b"]


def test_read_ignore_file_keeps_lone_slash_and_bare_bang() -> None:
    assert read_ignore_file("/\n!\n") == ["/", "!"]


def test_clean_path_follows_go_filepath_clean() -> None:
    assert clean_path("") == "."
    assert clean_path("a//b/./c/..") == "a/b"
    assert clean_path("../../a") == "../../a"
    assert clean_path("/../a/") == "/a"
    assert clean_path("//") == "/"


def test_exception_reincludes_file_inside_excluded_dir() -> None:
    m = PatternMatcher(["docs", "!docs/README.md"])
    assert m.matches("docs/other.md")
    assert not m.matches("docs/README.md")


def test_later_pattern_overrides_earlier_exception() -> None:
    m = PatternMatcher(["*.log", "!keep.log", "keep*"])
    assert m.matches("keep.log")


def test_pattern_matching_a_parent_excludes_everything_below() -> None:
    m = PatternMatcher(["build"])
    assert m.matches("build/a/b/c.o")
    assert not m.matches("builder/x")


def test_star_does_not_cross_directories() -> None:
    m = PatternMatcher(["*.txt"])
    assert m.matches("a.txt")
    assert not m.matches("sub/a.txt")


def test_double_star_matches_at_any_depth_including_root() -> None:
    m = PatternMatcher(["**/*.pyc"])
    assert m.matches("a.pyc")
    assert m.matches("x/y/z/a.pyc")
    assert not m.matches("x/a.py")


def test_dir_double_star_matches_below_but_not_the_dir() -> None:
    m = PatternMatcher(["dir/**"])
    assert m.matches("dir/a")
    assert not m.matches("dir")


def test_regexp_metacharacters_are_literal() -> None:
    m = PatternMatcher(["a+b(c).txt"])
    assert m.matches("a+b(c).txt")
    assert not m.matches("aab(c)xtxt")


def test_class_characters_are_literal_inside_brackets() -> None:
    assert PatternMatcher(["a[*]"]).matches("a*")
    assert not PatternMatcher(["a[*]"]).matches("ab")


def test_root_is_never_excluded() -> None:
    m = PatternMatcher(["**"])
    assert not m.matches("")
    assert not m.matches(".")
    assert m.matches("anything")


@pytest.mark.parametrize("pattern", ["[", "a[", "[]a]", "[x-]", "\\", "ok/[^"])
def test_malformed_pattern_raises_build_error_with_hint(pattern: str) -> None:
    with pytest.raises(BuildError) as info:
        PatternMatcher(["fine", pattern])
    assert info.value.hint and "filepath.Match" in info.value.hint


def test_bare_exclamation_mark_is_rejected() -> None:
    with pytest.raises(BuildError, match="illegal exclusion pattern"):
        PatternMatcher(["a", "  !  "])


def test_backwards_range_builds_but_fails_on_match_and_validate() -> None:
    m = PatternMatcher(["[z-a]"])
    with pytest.raises(BuildError):
        m.matches("x")
    with pytest.raises(BuildError):
        m.validate()


def test_patterns_are_cleaned_and_keep_their_exclamation_mark() -> None:
    m = PatternMatcher(["docs/", " ", "!docs//README.md "])
    assert m.patterns == ("docs", "!docs/README.md")
    assert m.has_exclusions


def test_dir_excluded_entirely_without_exceptions() -> None:
    assert PatternMatcher(["node_modules"]).excludes_dir_entirely("node_modules")


@pytest.mark.parametrize(
    "exception", ["!node_modules/keep", "!**/*.md", "!*/keep", "!node_*/x", "!**"]
)
def test_dir_not_skipped_when_an_exception_could_match_below(exception: str) -> None:
    m = PatternMatcher(["node_modules", exception])
    assert not m.excludes_dir_entirely("node_modules")


@pytest.mark.parametrize("exception", ["!*.md", "!src/keep", "!node_modules", "!a*/x"])
def test_dir_skipped_when_no_exception_can_reach_below(exception: str) -> None:
    m = PatternMatcher(["node_modules", exception, "node_modules"])
    assert m.excludes_dir_entirely("node_modules")


def test_exception_before_the_excluding_pattern_does_not_prevent_skipping() -> None:
    m = PatternMatcher(["!node_modules/keep", "node_modules"])
    assert m.excludes_dir_entirely("node_modules")


def test_included_dir_is_not_excluded_entirely() -> None:
    assert not PatternMatcher(["*.o"]).excludes_dir_entirely("src")


SEGMENTS = st.sampled_from(["a", "b", "ab", ".x", "a.md", "*", "?", "[ab]", "[^a]", "**", "a*"])
NAMES = st.sampled_from(["a", "b", "ab", ".x", "a.md", "ba", "c"])


@st.composite
def pattern_lists(draw: st.DrawFn) -> list[str]:
    patterns = []
    for _ in range(draw(st.integers(1, 4))):
        body = "/".join(draw(st.lists(SEGMENTS, min_size=1, max_size=3)))
        patterns.append(("!" if draw(st.booleans()) else "") + body)
    return patterns


@settings(max_examples=300, deadline=None)
@given(pattern_lists(), st.lists(NAMES, min_size=1, max_size=4))
def test_incremental_match_agrees_with_full_match(patterns: list[str], parts: list[str]) -> None:
    m = PatternMatcher(patterns)
    state = None
    for i in range(len(parts)):
        path = "/".join(parts[: i + 1])
        state = m.match_with_parent(path, state)
        assert state.excluded is m.matches(path)


@settings(max_examples=300, deadline=None)
@given(pattern_lists(), st.lists(NAMES, min_size=1, max_size=2), st.lists(NAMES, min_size=1))
def test_dir_excluded_entirely_means_every_path_below_is_excluded(
    patterns: list[str], dir_parts: list[str], below: list[str]
) -> None:
    m = PatternMatcher(patterns)
    rel_dir = "/".join(dir_parts)
    if m.excludes_dir_entirely(rel_dir):
        assert m.matches(rel_dir + "/" + "/".join(below))


def test_glob_star_matches_dotfiles_and_whole_names_only() -> None:
    g = Glob("*.txt")
    assert g.matches(".hidden.txt")
    assert not g.matches("a.txt.bak")


def test_glob_escape_makes_wildcard_literal() -> None:
    assert Glob("a\\*b").matches("a*b")
    assert not Glob("a\\*b").matches("axb")


def test_glob_backwards_range_matches_nothing() -> None:
    assert not Glob("[z-a]").matches("m")


def test_glob_malformed_pattern_raises() -> None:
    with pytest.raises(BuildError):
        Glob("a[")


def test_has_wildcards_ignores_escaped_characters() -> None:
    assert has_wildcards("a*")
    assert has_wildcards("[ab]")
    assert not has_wildcards("a\\*b")
    assert not has_wildcards("plain.txt")
