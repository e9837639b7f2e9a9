"""BuildKit's Dockerfile parser test data (../shared/conformance/buildkit-dockerfile-parser).

Each upstream case is its own test id, so the pytest summary is the pass count. The
positive cases render our nodes in BuildKit's AST dump format and compare byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.errors import DockerfileError
from builder.frontend.dockerfile import (
    detect_syntax,
    find_directive,
    parse_directives,
    parse_dockerfile,
    parse_nodes,
)
from builder.frontend.nodes import (
    NotStringArrayError,
    dump_node,
    heredocs_in_line,
    node_from_line,
    parse_heredoc_word,
    parse_json_array,
    parse_words,
)

BASE = Path(__file__).parents[2].parent / "shared" / "conformance" / "buildkit-dockerfile-parser"
MISSING = pytest.mark.skip(reason=f"conformance data not found at {BASE}")


def _dirs(sub: str) -> list[Any]:
    if not (BASE / sub).is_dir():
        return [pytest.param(None, marks=MISSING)]
    return [pytest.param(p, id=p.name) for p in sorted((BASE / sub).iterdir())]


def _extracted(section: str) -> list[Any]:
    path = BASE / "extracted-parser-cases.json"
    if not path.is_file():
        return [pytest.param(None, marks=MISSING)]
    cases = json.loads(path.read_text(encoding="utf-8"))[section]
    if isinstance(cases, dict):
        return [pytest.param(cases, id=section)]
    return [pytest.param(case, id=f"{section}-{i}") for i, case in enumerate(cases)]


def _read(path: Path) -> str:
    # Byte-exact files: no newline translation.
    return path.read_bytes().decode("utf-8")


def render(text: str) -> str:
    """Our parse of ``text`` in BuildKit's dump format (one line per instruction)."""
    return "".join(f"({dump_node(node)})\n" for node in parse_nodes(text).children)


@pytest.mark.parametrize("case", _dirs("testfiles"))
@pytest.mark.conformance("buildkit-dockerfile-parser testfiles/")
def test_positive_case_dumps_like_buildkit(case: Path) -> None:
    assert render(_read(case / "Dockerfile")) == _read(case / "result")


@pytest.mark.parametrize("case", _dirs("testfiles-negative"))
@pytest.mark.conformance("buildkit-dockerfile-parser testfiles-negative/")
def test_negative_case_fails_with_a_line_number(case: Path) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(_read(case / "Dockerfile"), file="Dockerfile")
    assert caught.value.line is not None and caught.value.line >= 1
    assert caught.value.file == "Dockerfile"


@pytest.mark.parametrize("case", _extracted("line_numbers"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_instruction_line_spans_match_buildkit(case: dict[str, Any]) -> None:
    tree = parse_nodes(_read(BASE / case["file"]))
    spans = [[node.start_line, node.end_line] for node in tree.children]
    assert spans == case["children"]
    assert [spans[0][0], spans[-1][1]] == case["root"]


@pytest.mark.parametrize("case", _extracted("heredoc_extraction"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_heredocs_attach_to_the_right_instruction(case: dict[str, Any]) -> None:
    tree = parse_nodes(case["dockerfile"])
    expected = case["expect_heredocs_by_child_index_from_1"]
    assert len(tree.children) == len(expected) + 1
    for node, want in zip(tree.children[1:], expected, strict=True):
        got = [
            {"name": d.name, "content": d.content, "expand": d.expand, "chomp": d.chomp, "fd": d.fd}
            for d in node.heredocs
        ]
        assert (got or None) == want, node.original


@pytest.mark.parametrize("case", _extracted("heredoc_json_form_ignored"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_json_form_never_takes_heredocs(case: dict[str, Any]) -> None:
    tree = parse_nodes(case["dockerfile"])
    for index in case["children_without_heredocs"]:
        assert tree.children[index].heredocs == ()


@pytest.mark.parametrize("case", _extracted("heredoc_word"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_heredoc_words_parse_refuse_or_ignore_like_buildkit(case: dict[str, Any]) -> None:
    for word in case["valid_name_EOF"]:
        found = parse_heredoc_word(word)
        assert found is not None and found.name == "EOF", word
    for word in case["invalid_error"]:
        with pytest.raises(DockerfileError):
            parse_heredoc_word(word)
    for word in case["not_heredoc"]:
        assert parse_heredoc_word(word) is None, word


@pytest.mark.parametrize("case", _extracted("heredocs_from_line"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_heredoc_names_found_in_a_line(case: dict[str, Any]) -> None:
    assert [d.name for d in heredocs_in_line(case["line"])] == case["expect_names"]


@pytest.mark.parametrize("case", _extracted("parse_words"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_word_splitter_keeps_quotes(case: dict[str, Any]) -> None:
    assert parse_words(case["input"], "\\") == case["expect"]


@pytest.mark.parametrize("case", _extracted("empty_continuation_warnings"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_empty_continuation_lines_warn(case: dict[str, Any]) -> None:
    warnings = parse_nodes(case["dockerfile"]).warnings
    assert len(warnings) == case["expect_warning_count"]
    for fragment in case["expect_warning_0_contains"]:
        assert fragment in warnings[0].message
    for fragment in case["expect_warning_1_contains"]:
        assert fragment in warnings[1].message
    assert case["expect_warning_0_detail_contains"] in warnings[0].detail


@pytest.mark.parametrize("case", _extracted("line_too_long"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_overlong_line_is_refused(case: dict[str, Any]) -> None:
    # The generator is a plain string expression from our own data file.
    text = eval(case["generator"], {"__builtins__": {}})
    with pytest.raises(DockerfileError, match=case["expect_error"]) as caught:
        parse_nodes(text)
    assert caught.value.line == 3


@pytest.mark.parametrize("case", _extracted("json_array_valid"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_json_array_decodes(case: dict[str, Any]) -> None:
    assert parse_json_array(case["input"]) == case["expect"]
    node = node_from_line("CMD " + case["input"], "\\")
    assert node.json and list(node.args) == case["expect"]


@pytest.mark.parametrize("case", _extracted("json_array_not_all_strings"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_json_array_of_non_strings_is_refused(case: str) -> None:
    with pytest.raises(NotStringArrayError):
        parse_json_array(case)
    with pytest.raises(DockerfileError, match="strings only"):
        node_from_line("CMD " + case, "\\")


@pytest.mark.parametrize("case", _extracted("directive_parser"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_directive_scan_keeps_only_known_keys(case: dict[str, Any]) -> None:
    expected = tuple((d["name"], d["value"]) for d in case["expect"])
    assert parse_directives(case["text"]) == expected


@pytest.mark.parametrize("case", _extracted("detect_syntax"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_detect_syntax(case: dict[str, Any]) -> None:
    text = bytes.fromhex(case.get("text_hex_prefix", "")).decode("utf-8") + case["text"]
    _check_directive(detect_syntax(text), case, "ref")


@pytest.mark.parametrize("case", _extracted("parse_directive"))
@pytest.mark.conformance("buildkit-dockerfile-parser extracted-parser-cases.json")
def test_find_directive(case: dict[str, Any]) -> None:
    _check_directive(find_directive(case["key"], case["text"]), case, "value")


def _check_directive(found: Any, case: dict[str, Any], value_key: str) -> None:
    assert (found is not None) == case["found"]
    if found is None:
        return
    assert found.value == case[value_key]
    if "cmdline" in case:
        assert found.cmdline == case["cmdline"]
    if "line" in case:
        assert found.line == case["line"]
