"""'did you mean' where BuildKit gives one (util/suggest.WrapError): a misspelt mount key,
mount type or sharing mode (instructions/commands_runmount.go parseMount) and
``--target`` (dockerfile2llb/convert.go: the stage names)."""

from __future__ import annotations

import pytest

from builder.errors import BuildError
from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.mounts import parse_mount
from builder.plan.planner import PlanRequest, make_plan
from cache.images import StoredImage


def _no_stage(ref: str) -> int:
    raise AssertionError(ref)


def _no_image(name: str, base: ins.From) -> StoredImage:
    raise AssertionError(name)


@pytest.mark.parametrize(
    ("raw", "suggestion"),
    [
        ("type=bind,tagret=/t", "unexpected key 'tagret' for type=bind (did you mean target?)"),
        ("type=tpmfs,target=/t", 'unsupported mount type "tpmfs" (did you mean tmpfs?)'),
        ("type=cache,target=/t,sharing=shred", "invalid sharing 'shred' (did you mean shared?)"),
    ],
)
def test_misspelt_mount_words_get_the_closest_valid_one(raw: str, suggestion: str) -> None:
    with pytest.raises(BuildError) as info:
        parse_mount(raw, _no_stage)
    assert suggestion in info.value.message


def test_a_mount_word_far_from_every_valid_one_gets_no_suggestion() -> None:
    with pytest.raises(BuildError) as info:
        parse_mount("type=bind,xyzzyq=/t", _no_stage)
    assert "did you mean" not in info.value.message


def test_misspelt_target_gets_the_closest_stage_name() -> None:
    df = parse_dockerfile("FROM scratch AS build\nFROM scratch AS test\n")
    with pytest.raises(BuildError) as info:
        make_plan(PlanRequest(df, {}, "biuld", "host"), _no_image)
    assert 'target stage "biuld" could not be found' in info.value.message
    assert info.value.message.endswith("(did you mean build?)")
