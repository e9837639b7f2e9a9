"""Our Dockerfile parser against dockerfile-parse, an independent Python parser.

Both read BuildKit's parser testfiles (../shared/conformance/buildkit-dockerfile-parser)
and every Dockerfile in this repository (fixtures/, tests/parity/cases/). For each
instruction they must give the same keyword (upper-case), start line and value (the text
after the keyword once continuation lines are joined, blanks at either end dropped).
Comment lines are not instructions: dockerfile-parse lists them and they are left out.

Where the two differ, BuildKit's own expected dumps (the conformance parser test) show
that we follow BuildKit; each such case is listed in ``DIFFERS`` with its reason, and a
listed case that starts to agree fails, so the list stays true.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from builder.frontend.dockerfile import parse_nodes

REPO = Path(__file__).parents[2]
BASE = REPO.parent / "shared" / "conformance" / "buildkit-dockerfile-parser" / "testfiles"
MISSING = pytest.mark.skip(reason=f"conformance data not found at {BASE}")

Instruction = tuple[str, int, str]

_CONTINUATION_SKIPS_BLANKS = (
    "an empty line inside a continuation: BuildKit skips it and keeps joining, "
    "dockerfile-parse ends the instruction there and reads the next line as a new one"
)
_CONTINUATION_AT_EOF = (
    "the last line ends with a backslash at end of file: BuildKit keeps the instruction, "
    "dockerfile-parse drops it"
)
_HEREDOC = (
    "heredocs (Dockerfile 1.4): BuildKit reads the body as the instruction's input, "
    "dockerfile-parse reads each body line as an instruction"
)

#: Cases where the parsers disagree; in each, BuildKit's expected dump agrees with us.
DIFFERS: dict[str, str] = {
    "buildkit/brimstone-consuldock": _CONTINUATION_SKIPS_BLANKS,
    "buildkit/brimstone-docker-consul": _CONTINUATION_SKIPS_BLANKS,
    "buildkit/escapes": _CONTINUATION_SKIPS_BLANKS,
    "buildkit/continueIndent": (
        "comment and empty lines inside a continuation: BuildKit skips both and keeps "
        "joining, dockerfile-parse ends the instruction at the empty line"
    ),
    "buildkit/continue-at-eof": _CONTINUATION_AT_EOF,
    "buildkit/env": _CONTINUATION_AT_EOF,
    "buildkit/trailing-backslash": (
        "a line ending in an escaped backslash (\\\\): BuildKit ends the instruction, "
        "dockerfile-parse takes the last backslash as a continuation and joins the next "
        "instruction into it"
    ),
    "tests/parity/cases/heredoc_copy": _HEREDOC,
    "tests/parity/cases/heredoc_quotes_literal": _HEREDOC,
    "tests/parity/cases/heredoc_run": _HEREDOC,
}


def _buildkit_cases() -> dict[str, Path]:
    if not BASE.is_dir():
        return {}
    return {f"buildkit/{case.name}": case / "Dockerfile" for case in sorted(BASE.iterdir())}


def _repo_cases() -> dict[str, Path]:
    found = sorted(
        path
        for root in (REPO / "fixtures", REPO / "tests" / "parity" / "cases")
        for path in root.rglob("*")
        if path.name.lower() == "dockerfile" and path.is_file()
    )
    return {str(path.parent.relative_to(REPO)): path for path in found}


def _params(cases: dict[str, Path], *, differing: bool) -> list[Any]:
    chosen = [
        pytest.param(path, id=name)
        for name, path in cases.items()
        if (name in DIFFERS) == differing
    ]
    return chosen or [pytest.param(None, marks=MISSING)]


def ours(text: str) -> list[Instruction]:
    """Our nodes as (keyword, 1-based start line, value after the keyword)."""
    return [
        (node.keyword.upper(), node.start_line, node.original.lstrip()[len(node.keyword) :].strip())
        for node in parse_nodes(text).children
    ]


def theirs(text: str) -> list[Instruction]:
    """dockerfile-parse's ``structure`` in the same shape, comments left out."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")))
    return [
        (entry["instruction"], entry["startline"] + 1, entry["value"].strip())
        for entry in parser.structure
        if entry["instruction"] != "COMMENT"
    ]


def _read(path: Path) -> str:
    # As a build reads a Dockerfile: no newline translation, invalid UTF-8 as U+FFFD.
    return path.read_bytes().decode("utf-8", errors="replace")


@pytest.mark.parametrize("path", _params(_buildkit_cases(), differing=False))
@pytest.mark.conformance("dockerfile-parse agrees on buildkit-dockerfile-parser testfiles/")
def test_parsers_agree_on_buildkit_testfiles(path: Path) -> None:
    text = _read(path)
    assert ours(text) == theirs(text)


@pytest.mark.parametrize("path", _params(_repo_cases(), differing=False))
@pytest.mark.conformance("dockerfile-parse agrees on this repository's Dockerfiles")
def test_parsers_agree_on_repository_dockerfiles(path: Path) -> None:
    text = _read(path)
    assert ours(text) == theirs(text)


@pytest.mark.parametrize("path", _params({**_buildkit_cases(), **_repo_cases()}, differing=True))
@pytest.mark.conformance("dockerfile-parse still differs where DIFFERS says")
def test_listed_cases_still_differ(path: Path) -> None:
    text = _read(path)
    assert ours(text) != theirs(text), "the parsers agree now: take the case out of DIFFERS"


def test_every_listed_case_exists() -> None:
    known = {**_buildkit_cases(), **_repo_cases()}
    unchecked = set() if BASE.is_dir() else {n for n in DIFFERS if n.startswith("buildkit/")}
    assert sorted(set(DIFFERS) - set(known) - unchecked) == []
