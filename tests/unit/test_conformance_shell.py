"""BuildKit's shell-lexer vectors (../shared/conformance/buildkit-dockerfile-shell).

Every vector is its own test id, so the pytest summary is the pass count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.errors import DockerfileError
from builder.frontend.expand import env_from_list, expand_word, expand_word_tracked, expand_words

BASE = Path(__file__).parents[2].parent / "shared" / "conformance" / "buildkit-dockerfile-shell"
MISSING = pytest.mark.skip(reason=f"conformance data not found at {BASE}")
ENV_VAR_TEST_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _lines(name: str) -> list[str] | None:
    path = BASE / name
    return path.read_bytes().decode("utf-8").split("\n") if path.is_file() else None


def _env_var_cases() -> list[Any]:
    lines = _lines("envVarTest")
    if lines is None:
        return [pytest.param("", "", marks=MISSING)]
    cases = []
    for number, line in enumerate(lines, start=1):
        if line.startswith("#") or not line.strip():
            continue
        platform, source, expected = (field.strip() for field in line.strip().split("|"))
        if platform in ("A", "U"):  # W lines are Windows-only
            cases.append(pytest.param(source, expected, id=f"line{number}"))
    return cases


def _words_cases() -> list[Any]:
    lines = _lines("wordsTest")
    if lines is None:
        return [pytest.param("", {}, [], marks=MISSING)]
    cases = []
    env: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if line.startswith("#") or not line:
            continue
        if line.startswith("ENV "):
            name, value = line[4:].lstrip(" ").split("=", 1)
            env = {**env, name: value}
            continue
        source, expected = line.split("|")
        words = expected.lstrip(" ").split(",")
        cases.append(pytest.param(source.strip(), env, words, id=f"line{number}"))
    return cases


def _lex_cases(section: str) -> list[Any]:
    path = BASE / "extracted-lex-cases.json"
    if not path.is_file():
        return [pytest.param(None, marks=MISSING)]
    cases = json.loads(path.read_text(encoding="utf-8"))[section]
    return [pytest.param(case, id=f"{section}-{i}") for i, case in enumerate(cases)]


@pytest.mark.parametrize(("source", "expected"), _env_var_cases())
@pytest.mark.conformance("buildkit-dockerfile-shell envVarTest")
def test_env_var_vector(source: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(DockerfileError):
            expand_word(source, ENV_VAR_TEST_ENV)
    else:
        assert expand_word(source, ENV_VAR_TEST_ENV) == expected


@pytest.mark.parametrize(("source", "env", "expected"), _words_cases())
@pytest.mark.conformance("buildkit-dockerfile-shell wordsTest")
def test_words_vector(source: str, env: dict[str, str], expected: list[str]) -> None:
    if expected == ["error"]:
        with pytest.raises(DockerfileError):
            expand_words(source, env)
    else:
        assert expand_words(source, env) == expected


@pytest.mark.parametrize("case", _lex_cases("process_word_with_matches"))
@pytest.mark.conformance("buildkit-dockerfile-shell extracted-lex-cases.json")
def test_process_word_with_matches(case: dict[str, Any]) -> None:
    if case.get("expect_error"):
        with pytest.raises(DockerfileError):
            expand_word_tracked(case["input"], case["env"])
        return
    result = expand_word_tracked(case["input"], case["env"])
    assert result.text == case["expect"]
    assert result.matched == set(case["matched"])
    assert result.unmatched == set(case["unmatched"])


@pytest.mark.parametrize("case", _lex_cases("mandatory_env_vars"))
@pytest.mark.conformance("buildkit-dockerfile-shell extracted-lex-cases.json")
def test_mandatory_variables(case: dict[str, Any]) -> None:
    env = env_from_list(case["env_list"])
    if case.get("expect_error"):
        with pytest.raises(DockerfileError, match=case["error_contains"]):
            expand_word(case["input"], env)
    else:
        assert expand_word(case["input"], env) == case["expect"]


@pytest.mark.parametrize("case", _lex_cases("platform_release_name"))
@pytest.mark.conformance("buildkit-dockerfile-shell extracted-lex-cases.json")
def test_release_file_name_template(case: dict[str, Any]) -> None:
    assert expand_word(case["input"], case["env"]) == case["expect"]


@pytest.mark.parametrize("case", _lex_cases("env_list_lookup"))
@pytest.mark.conformance("buildkit-dockerfile-shell extracted-lex-cases.json")
def test_env_list_lookup(case: dict[str, Any]) -> None:
    assert env_from_list(case["env_list"]).get(case["lookup"], "") == case["expect"]
