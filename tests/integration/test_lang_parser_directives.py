"""Parser directives through the CLI: ``syntax``, ``check`` and ``escape`` are read only
from the comment lines that open the Dockerfile; after anything else they are comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, build_rootfs

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def test_parser_directives_syntax_check_and_backslash_escape(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    dockerfile = (
        "# syntax=docker/dockerfile:1\n"
        "# check=skip=all\n"
        "# escape=\\\n"
        "FROM busybox\n"
        "# escape=`\n"  # not a directive any more: a comment
        "RUN echo a \\\n"
        "# a comment inside the continuation\n"
        "\n"
        "  b > /x\n"
    )
    out = build_rootfs(pybuild, tmp_path, dockerfile)
    assert (out / "x").read_text() == "a b\n"


def test_directive_after_a_comment_is_only_a_comment(pybuild: Pybuild, tmp_path: Path) -> None:
    # `# escape=`` after another comment does nothing, so the backslash still continues.
    out = build_rootfs(
        pybuild, tmp_path, "# hello\n# escape=`\nFROM busybox\nRUN echo a \\\n b > /x\n"
    )
    assert (out / "x").read_text() == "a b\n"
