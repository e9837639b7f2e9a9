"""COPY/ADD history text as current BuildKit writes it (dockerfile2llb dispatchCopy, v0.13+):
only --parents, --chown and --chmod among the flags, the destination as written."""

from __future__ import annotations

import pytest

from builder.errors import BuildError
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.planner import PlanRequest, make_plan


def history_of(text: str) -> list[str]:
    """created_by of every step of the last stage of ``text`` (no images needed)."""

    def no_images(name: str, _instr: object) -> object:
        raise BuildError(f"no image {name}")

    df = parse_dockerfile(text, "Dockerfile")
    plan = make_plan(PlanRequest(df, {}, None, "none"), no_images)  # type: ignore[arg-type]
    return [step.created_by for step in plan.stages[-1].steps]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("COPY --from=a /x /y", "COPY /x /y # buildkit"),
        ("COPY --chown=1:2 --chmod=640 a b /d/", "COPY --chown=1:2 --chmod=640 a b /d/ # buildkit"),
        ("COPY --chmod=u+x --chown=app a /d", "COPY --chown=app --chmod=u+x a /d # buildkit"),
        ("COPY --link --exclude=*.md . /src", "COPY . /src # buildkit"),
        ("COPY --parents a/./b /d/", "COPY --parents a/./b /d/ # buildkit"),
        ("ADD --chown=7:8 --unpack=false x.tar ./", "ADD --chown=7:8 x.tar ./ # buildkit"),
        ("COPY --chown=$U f $D", "COPY --chown=5 f rel # buildkit"),
    ],
)
def test_copy_history_keeps_only_buildkits_flags_and_the_written_dest(
    line: str, expected: str
) -> None:
    text = f"FROM scratch AS a\nFROM scratch\nARG U=5 D=rel\nWORKDIR /w\n{line}\n"
    assert history_of(text)[-1] == expected


def test_copy_history_names_heredocs_after_the_sources() -> None:
    text = "FROM scratch\nCOPY --chmod=755 a <<EOF ./\necho hi\nEOF\n"
    assert history_of(text)[-1] == "COPY --chmod=755 a <<EOF ./ # buildkit"


def test_copy_history_drops_an_empty_chown() -> None:
    text = "FROM scratch\nARG U\nCOPY --chown=$U a /b\n"
    assert history_of(text)[-1] == "COPY a /b # buildkit"
