"""BuildKit's build checks through the CLI: located warnings, ``# check=skip``, and
``# check=error=true`` failing before any step runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, build_error, write_context

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


EMPTY_CONTINUATION = "FROM busybox\nRUN echo a \\\n\n  b > /x\n"


def test_empty_continuation_line_warns_and_check_directive_controls_it(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "warn", {}, EMPTY_CONTINUATION)
    warned = pybuild.build(ctx)
    assert "WARNING: " in warned.err and "Dockerfile:4: NoEmptyContinuation" in warned.err
    err = build_error(pybuild, tmp_path / "error", "# check=error=true\n" + EMPTY_CONTINUATION)
    assert "Dockerfile:5" in err and "lint violation found for rules: NoEmptyContinuation" in err
    skipped = write_context(
        tmp_path / "skip", {}, "# check=skip=NoEmptyContinuation;error=true\n" + EMPTY_CONTINUATION
    )
    assert "NoEmptyContinuation" not in pybuild.build(skipped).err
    bad = build_error(pybuild, tmp_path / "bad", "# check=sikp=all\n" + EMPTY_CONTINUATION)
    assert "Dockerfile:1" in bad and "invalid check option 'sikp'" in bad
