"""``pybuild --version``, mistyped commands, and the build flags' parsers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from builder.cli.build_flags import parse_annotations, parse_pairs, parse_platform_flag
from builder.cli.images import human_age
from builder.cli.main import main
from builder.errors import UsageError
from builder.ops.runsettings import parse_run_settings, parse_shm_size, parse_ulimit
from runtime.spec import Rlimit


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("pybuild 0.")


def test_a_mistyped_command_suggests_the_closest_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["imgaes"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'imgaes'" in err and "did you mean 'images'" in err
    assert not (tmp_path / "imgaes").exists()


def test_an_existing_directory_still_builds_by_shorthand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from builder.cli.main import _with_shorthand

    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgaes").mkdir()
    assert _with_shorthand(["imgaes"]) == ["build", "imgaes"]
    assert _with_shorthand(["-t", "x", "."]) == ["build", "-t", "x", "."]


def test_run_settings_parse_docker_s_forms() -> None:
    settings = parse_run_settings(["db:10.0.0.1", "v6=::1"], "64m", ["nofile=10:20", "nproc=5"])
    assert settings.add_hosts == (("db", "10.0.0.1"), ("v6", "::1"))
    assert settings.shm_size == 64 << 20
    assert settings.ulimits == (Rlimit("nofile", 10, 20), Rlimit("nproc", 5, 5))
    assert "10.0.0.1\tdb" in settings.hosts_file("pybuild")
    assert parse_run_settings([], None, []).key_extra() == ()  # unset: keys unchanged
    assert parse_ulimit("core=-1").soft == -1
    assert parse_shm_size("1g") == 1 << 30


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: parse_ulimit("nofile=20:10"), "soft limit is above"),
        (lambda: parse_ulimit("bogus=1"), "expected NAME=SOFT"),
        (lambda: parse_shm_size("lots"), "expected a size"),
        (lambda: parse_run_settings(["nocolon"], None, []), "expected HOST:IP"),
        (lambda: parse_pairs(["novalue"], "--label"), "expected KEY=VALUE"),
        (
            lambda: parse_annotations(
                ["index-descriptor:k=v"],
            ),
            "not supported",
        ),
        (lambda: parse_platform_flag("linux//arm64"), "invalid platform"),
    ],
)
def test_bad_flag_values_are_usage_errors(call: object, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        call()  # type: ignore[operator]


def test_ages_read_as_docker_s() -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    assert human_age("1970-01-01T00:00:00Z", now) == "56 years ago"
    assert human_age("2026-12-04T23:00:00Z", now) == "About an hour ago"
    assert human_age("2026-11-25T00:00:00Z", now) == "10 days ago"
    assert human_age("2026-10-20T00:00:00Z", now) == "6 weeks ago"
    assert human_age("2026-10-01T00:00:00Z", now) == "2 months ago"
    assert human_age("", now) == "N/A"
