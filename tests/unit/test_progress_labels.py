"""Step names in progress are numbered as BuildKit numbers them (dockerfile2llb/convert.go
prefixCommand and the cmdTotal count in buildDispatchStates / initOnBuildTriggers)."""

from __future__ import annotations

from builder.cli.steplabel import step_label
from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.planner import PlanRequest, make_plan
from cache.digest import sha256_bytes
from cache.images import StoredImage
from cache.oci import MEDIA_OCI_CONFIG, ContainerConfig, Descriptor, ImageConfig, Manifest


def _labels(text: str, triggers: tuple[str, ...] = ()) -> list[str]:
    def resolve(name: str, instr: ins.From) -> StoredImage:
        config_digest = sha256_bytes(name.encode())
        manifest = Manifest(Descriptor(MEDIA_OCI_CONFIG, config_digest, 2), ())
        config = ImageConfig(config=ContainerConfig(on_build=triggers))
        return StoredImage(sha256_bytes(b"m" + name.encode()), manifest, config, config_digest)

    plan = make_plan(PlanRequest(parse_dockerfile(text), {}, None, "host"), resolve)
    return [step_label(s, step) for s in plan.stages for step in s.steps if step.spec]


def test_a_single_stage_is_numbered_without_a_name_and_from_an_image_counts_first() -> None:
    text = "FROM busybox\nENV A=1\nRUN true\nCOPY a /a\n"
    assert _labels(text) == ["[2/3] RUN true", "[3/3] COPY a /a"]


def test_stages_are_named_or_stage_index_and_scratch_or_a_stage_base_is_not_counted() -> None:
    text = "FROM scratch AS base\nCOPY a /a\nFROM base\nWORKDIR /w\nRUN true\n"
    assert _labels(text) == [
        "[base 1/1] COPY a /a",
        "[stage-1 1/2] WORKDIR /w",
        "[stage-1 2/2] RUN true",
    ]


def test_workdir_root_counts_in_the_total_but_takes_no_number() -> None:
    assert _labels("FROM busybox\nWORKDIR /\nRUN true\n") == ["[2/3] RUN true"]


def test_numbers_are_right_aligned_to_the_width_of_the_total() -> None:
    text = "FROM busybox\n" + "RUN true\n" * 10
    labels = _labels(text)
    assert labels[0] == "[ 2/11] RUN true" and labels[-1] == "[11/11] RUN true"


def test_onbuild_triggers_count_and_read_onbuild() -> None:
    labels = _labels("FROM base\nRUN b\n", triggers=("RUN a", "ENV X=1"))
    assert labels == ["[2/4] ONBUILD RUN a", "[3/4] RUN b"]
