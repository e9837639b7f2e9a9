"""moby/patternmatcher and BuildKit .dockerignore cases from ../shared/conformance."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from builder.errors import BuildError
from builder.frontend.dockerignore import PatternMatcher, clean_path, read_ignore_file
from builder.ops.context import BuildContext

CASES_FILE = (
    Path(__file__).parents[2].parent
    / "shared"
    / "conformance"
    / "moby-patternmatcher"
    / "dockerignore-cases.json"
)


def _load() -> dict[str, Any]:
    if not CASES_FILE.is_file():
        return {}
    data: dict[str, Any] = json.loads(CASES_FILE.read_text(encoding="utf-8"))
    return data


DATA = _load()
needs_cases = pytest.mark.skipif(not DATA, reason=f"conformance data absent: {CASES_FILE}")


def _cases(section: str) -> list[Any]:
    if not DATA:
        return [pytest.param(None, id="absent")]
    if section == "build_context_cases":
        return [pytest.param(c, id=c["origin"]) for c in DATA[section]["cases"]]
    return [
        pytest.param(c, id=f"{i}-{c.get('origin', c.get('pattern'))}")
        for i, c in enumerate(DATA[section])
    ]


def _match(case: dict[str, Any]) -> bool:
    matcher = PatternMatcher(case["patterns"])
    path = case["path"]
    if case["clean_path"]:
        path = clean_path(path)
        if path == ".":
            return False
    return matcher.matches(path)


@needs_cases
@pytest.mark.parametrize("case", _cases("match_cases"))
@pytest.mark.conformance("moby-patternmatcher dockerignore-cases.json")
def test_pattern_matches_path_as_patternmatcher_does(case: dict[str, Any]) -> None:
    if case["expect"] == "error":
        with pytest.raises(BuildError):
            _match(case)
    else:
        assert _match(case) is case["expect"]


@needs_cases
@pytest.mark.conformance("moby-patternmatcher dockerignore-cases.json")
def test_malformed_pattern_builds_but_fails_every_match_the_same_way() -> None:
    (case,) = [c for c in DATA["match_cases"] if c.get("note")]
    matcher = PatternMatcher(case["patterns"])
    messages = []
    for _ in range(2):
        with pytest.raises(BuildError) as info:
            matcher.matches(case["path"])
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@needs_cases
@pytest.mark.parametrize("case", _cases("pattern_list_cases"))
@pytest.mark.conformance("moby-patternmatcher dockerignore-cases.json")
def test_pattern_list_is_cleaned_as_patternmatcher_does(case: dict[str, Any]) -> None:
    if case.get("expect_error"):
        with pytest.raises(BuildError):
            PatternMatcher(case["patterns"])
        return
    matcher = PatternMatcher(case["patterns"])
    if "expect_pattern_count" in case:
        assert len(matcher.patterns) == case["expect_pattern_count"]
    if "expect_has_exclusions" in case:
        assert matcher.has_exclusions is case["expect_has_exclusions"]


@needs_cases
@pytest.mark.parametrize("case", _cases("ignorefile_cases"))
@pytest.mark.conformance("moby-patternmatcher dockerignore-cases.json")
def test_ignore_file_is_read_as_buildkit_reads_it(case: dict[str, Any]) -> None:
    content = case["content"]
    assert read_ignore_file(content if content is not None else "") == case["expect"]


_SAMPLE_PATHS = [
    "x",
    "file",
    "xfile",
    "filex",
    "file.txt",
    "filextxt",
    "ace",
    "abe",
    ".foo",
    "foo",
    "abc.def",
    "abcdef",
    "dir",
    "dir/file",
    "dir/x",
    "dir2/x",
    "a/dir2/b/c",
    "ax/b",
    "a/c/b",
    "x.txt",
    "dir/dir/file.txt",
    "a(b)c/def",
    "a.|)$(}+{bc",
    "dist/a.whl",
]


def _upstream_hit(regexp: str, path: str) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(re.fullmatch(regexp.strip("^$"), c) for c in candidates)


@needs_cases
@pytest.mark.parametrize("case", _cases("compile_cases"))
@pytest.mark.conformance("moby-patternmatcher dockerignore-cases.json")
def test_pattern_agrees_with_upstream_compiled_regexp(case: dict[str, Any]) -> None:
    pattern = case["pattern"]
    matcher = PatternMatcher([pattern])
    # The pattern made concrete always matches.
    concrete = pattern.replace("**/", "").replace("**", "x").replace("*", "x").replace("?", "x")
    assert matcher.matches(concrete.replace("[b-d]", "c"))
    if case["regexp_slash"] is None:
        return
    for path in _SAMPLE_PATHS:
        assert matcher.matches(path) is _upstream_hit(case["regexp_slash"], path), path


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _copied(ctx: BuildContext) -> dict[str, str]:
    """What `COPY . .` would put in the image: files by name with their content."""
    return {e.rel: e.path.read_text() for e in ctx.walk("") if e.kind == "file"}


@needs_cases
@pytest.mark.parametrize("case", _cases("build_context_cases"))
@pytest.mark.conformance("moby-patternmatcher dockerignore-cases.json")
def test_build_context_copy_all_sees_what_buildkit_sends(
    case: dict[str, Any], tmp_path: Path
) -> None:
    _write_tree(tmp_path, case["context_files"])
    builds = case.get("builds") or [case]
    for build in builds:
        dockerfile = tmp_path / build["dockerfile_name"]
        if case.get("expect_build_error"):
            with pytest.raises(BuildError):
                BuildContext(tmp_path, dockerfile=dockerfile)
            continue
        copied = _copied(BuildContext(tmp_path, dockerfile=dockerfile))
        for name, content in build.get("expect_in_image", {}).items():
            assert copied[name] == content
        for name in build.get("expect_absent_from_image", []):
            assert name not in copied
        # The override builds assert with shell tests inside busybox; the facts are these:
        run = build.get("dockerfile", "")
        if "[ -f foo ] && [ ! -f bar ]" in run:
            assert "foo" in copied and "bar" not in copied
        if "[ ! -f foo ] && [ -f bar ]" in run:
            assert "foo" not in copied and "bar" in copied
