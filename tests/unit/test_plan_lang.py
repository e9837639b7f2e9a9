"""Planner pieces: ONBUILD trigger parsing, platform ARGs, SOURCE_DATE_EPOCH."""

from __future__ import annotations

import pytest

from builder.errors import BuildError
from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile
from builder.frontend.onbuild import trigger_instructions
from builder.plan.planner import _meta_args, source_date_epoch

FROM = ins.From(ins.Location("Dockerfile", 4, 4), "FROM base", "base", None, None)


def test_triggers_parse_and_take_the_from_location() -> None:
    out = trigger_instructions(("RUN echo hi", "COPY a /b"), FROM, "base")
    assert [type(i) for i in out] == [ins.Run, ins.Copy]
    assert all(i.location.line == 4 for i in out)


@pytest.mark.parametrize("trigger", ["ONBUILD RUN true", "MAINTAINER me", "FROM x"])
def test_forbidden_triggers_fail_at_the_from_line(trigger: str) -> None:
    with pytest.raises(BuildError) as err:
        trigger_instructions((trigger,), FROM, "base")
    assert err.value.line == 4 and "isn't allowed" in err.value.message


def test_platform_args_are_global_and_not_overridable() -> None:
    df = parse_dockerfile("ARG TARGETARCH\nARG OTHER\nFROM scratch\n")
    values = _meta_args(df, {"TARGETARCH": "arm64", "OTHER": "x"})
    assert values["TARGETARCH"] == "amd64"
    assert values["BUILDPLATFORM"] == "linux/amd64"
    assert values["OTHER"] == "x"


def test_targetstage_is_the_target_or_last_stage_name_or_default() -> None:
    named = parse_dockerfile("ARG TARGETSTAGE\nFROM scratch AS a\nFROM scratch AS b\n")
    assert _meta_args(named, {}, "a")["TARGETSTAGE"] == "a"
    assert _meta_args(named, {})["TARGETSTAGE"] == "b"
    assert _meta_args(parse_dockerfile("FROM scratch\n"), {})["TARGETSTAGE"] == "default"


def test_source_date_epoch_build_arg_wins_and_is_checked() -> None:
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "5"}, 9) == 5
    assert source_date_epoch({}, 9) == 9
    with pytest.raises(BuildError):
        source_date_epoch({"SOURCE_DATE_EPOCH": "soon"}, None)
