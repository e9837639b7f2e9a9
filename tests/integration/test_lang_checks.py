"""BuildKit's build checks through the CLI: located warnings, ``# check=skip``, and
``# check=error=true`` failing before any step runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

LINTED = "FROM busybox AS Build\nMAINTAINER someone\nENV GREETING hello\nCMD echo $GREETING\n"


def test_build_checks_warn_once_each_with_file_and_line(pybuild: Pybuild, tmp_path: Path) -> None:
    result = pybuild.build(write_context(tmp_path / "ctx", {}, LINTED))
    for expected in (
        "Dockerfile:1: StageNameCasing",
        "Dockerfile:2: MaintainerDeprecated",
        "Dockerfile:3: LegacyKeyValueFormat",
        "Dockerfile:4: JSONArgsRecommended",
    ):
        assert result.err.count(expected) == 1, result.err
    assert "WARNING" in result.err


def test_check_skip_silences_named_rules_only(pybuild: Pybuild, tmp_path: Path) -> None:
    directive = "# check=skip=StageNameCasing,JSONArgsRecommended,LegacyKeyValueFormat\n"
    result = pybuild.build(write_context(tmp_path / "ctx", {}, directive + LINTED))
    assert "Dockerfile:3: MaintainerDeprecated" in result.err
    for rule in ("StageNameCasing", "JSONArgsRecommended", "LegacyKeyValueFormat"):
        assert rule not in result.err


def test_check_error_true_fails_before_any_step_with_location(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    dockerfile = "# check=error=true\nFROM busybox\nRUN touch /ran\nWORKDIR app\n"
    result = pybuild.build(write_context(tmp_path / "ctx", {}, dockerfile), "-t", "x:1", ok=False)
    assert result.code == 1 and "Traceback" not in result.err
    assert "Dockerfile:4" in result.err
    assert "lint violation found for rules: WorkdirRelativePath" in result.err
    assert "touch /ran" not in result.out + result.err  # no step started
    assert "x:1" not in pybuild("images").out
