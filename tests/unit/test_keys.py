"""Cache keys: stable golden values, canonical JSON round trips, miss explanations."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cache.errors import CacheError
from cache.keys import (
    KEY_VERSION,
    KeyInputs,
    explain_miss,
    inputs_from_json,
    inputs_to_json,
    step_key,
)

BASE_A = "image:sha256:" + "ab" * 32
BASE_B = "image:sha256:" + "cd" * 32

GOLDEN = KeyInputs(
    parent=BASE_A,
    instruction="RUN --network=none echo hi",
    env=(("PATH", "/usr/bin"), ("VERSION", "1.0")),
    sources=(("app.py", "0123abcd"),),
    extra=(("user", "root"), ("workdir", "/app")),
)
GOLDEN_JSON = (
    '{"env":[["PATH","/usr/bin"],["VERSION","1.0"]],'
    '"extra":[["user","root"],["workdir","/app"]],'
    '"instruction":"RUN --network=none echo hi",'
    '"parent":"image:sha256:' + "ab" * 32 + '",'
    '"platform":"linux/amd64","sources":[["app.py","0123abcd"]],"version":2}'
)
# Changing this value invalidates every user's cache: bump KEY_VERSION when you do.
GOLDEN_KEY = "6c4f6fcfaa80ca94f3aef02ed1cb2fdce83a09af8e0870b9ce0c83aed0eda4c0"


def test_key_version_is_two() -> None:
    assert KEY_VERSION == 2


def test_golden_inputs_serialise_to_golden_json() -> None:
    assert inputs_to_json(GOLDEN) == GOLDEN_JSON


def test_golden_key_is_stable() -> None:
    assert step_key(GOLDEN) == GOLDEN_KEY
    assert hashlib.sha256(GOLDEN_JSON.encode()).hexdigest() == GOLDEN_KEY


def test_env_order_does_not_change_the_key() -> None:
    shuffled = dataclasses.replace(GOLDEN, env=(("VERSION", "1.0"), ("PATH", "/usr/bin")))
    assert shuffled == GOLDEN
    assert step_key(shuffled) == GOLDEN_KEY


def test_source_order_changes_the_key() -> None:
    a = dataclasses.replace(GOLDEN, sources=(("a", "1"), ("b", "2")))
    b = dataclasses.replace(GOLDEN, sources=(("b", "2"), ("a", "1")))
    assert step_key(a) != step_key(b)


@pytest.mark.parametrize(
    "change",
    [
        {"parent": BASE_B},
        {"instruction": "RUN echo hi"},
        {"env": (("PATH", "/usr/bin"), ("VERSION", "1.1"))},
        {"sources": (("app.py", "ffff"),)},
        {"platform": "linux/arm64"},
        {"extra": (("user", "app"), ("workdir", "/app"))},
    ],
)
def test_every_field_changes_the_key(change: dict[str, object]) -> None:
    assert step_key(dataclasses.replace(GOLDEN, **change)) != GOLDEN_KEY  # type: ignore[arg-type]


_text = st.text(max_size=20)
_pairs = st.lists(st.tuples(_text, _text), max_size=4).map(tuple)


@given(parent=_text, instruction=_text, env=_pairs, sources=_pairs, platform=_text, extra=_pairs)
def test_json_round_trip_preserves_inputs_and_key(
    parent: str,
    instruction: str,
    env: tuple[tuple[str, str], ...],
    sources: tuple[tuple[str, str], ...],
    platform: str,
    extra: tuple[tuple[str, str], ...],
) -> None:
    inputs = KeyInputs(parent, instruction, env, sources, platform, extra)
    back = inputs_from_json(inputs_to_json(inputs))
    assert back == inputs
    assert step_key(back) == step_key(inputs)


def test_inputs_from_json_rejects_other_versions_with_hint() -> None:
    with pytest.raises(CacheError) as info:
        inputs_from_json(GOLDEN_JSON.replace('"version":2', '"version":1'))
    assert info.value.hint


@pytest.mark.parametrize("text", ["not json", "[]", '{"version":1}', '{"version":1,"env":3}'])
def test_inputs_from_json_rejects_malformed_text(text: str) -> None:
    with pytest.raises(CacheError):
        inputs_from_json(text)


def test_explain_first_build() -> None:
    assert explain_miss(None, GOLDEN) == ["first build"]


def test_explain_nothing_when_inputs_equal() -> None:
    assert explain_miss(GOLDEN, dataclasses.replace(GOLDEN)) == []


def test_explain_base_image_changed_shows_short_digests() -> None:
    reasons = explain_miss(GOLDEN, dataclasses.replace(GOLDEN, parent=BASE_B))
    assert reasons == [f"base image changed (sha256:{'ab' * 6} → sha256:{'cd' * 6})"]


def test_explain_parent_step_missed() -> None:
    old = dataclasses.replace(GOLDEN, parent="a" * 64)
    new = dataclasses.replace(GOLDEN, parent="b" * 64)
    assert explain_miss(old, new) == ["parent step missed"]


def test_explain_instruction_text_changed() -> None:
    new = dataclasses.replace(GOLDEN, instruction="RUN echo bye")
    assert explain_miss(GOLDEN, new) == ["instruction text changed"]


def test_explain_env_changed_added_removed() -> None:
    new = dataclasses.replace(GOLDEN, env=(("VERSION", "1.1"), ("DEBUG", "1")))
    assert explain_miss(GOLDEN, new) == [
        "ARG/ENV DEBUG added",
        "ARG/ENV PATH removed",
        "ARG/ENV VERSION changed (1.0 → 1.1)",
    ]


def test_explain_long_values_are_shortened() -> None:
    old = dataclasses.replace(GOLDEN, env=(("X", "a" * 100),))
    new = dataclasses.replace(GOLDEN, env=(("X", "b" * 100),))
    (reason,) = explain_miss(old, new)
    assert len(reason) < 110
    assert "…" in reason


def test_explain_sources_changed_added_removed() -> None:
    old = dataclasses.replace(GOLDEN, sources=(("a.txt", "1"), ("b.txt", "2")))
    new = dataclasses.replace(GOLDEN, sources=(("a.txt", "9"), ("c.txt", "3")))
    assert explain_miss(old, new) == [
        "source a.txt changed",
        "source b.txt removed",
        "source c.txt added",
    ]


def test_explain_sources_reordered() -> None:
    old = dataclasses.replace(GOLDEN, sources=(("a", "1"), ("b", "2")))
    new = dataclasses.replace(GOLDEN, sources=(("b", "2"), ("a", "1")))
    assert explain_miss(old, new) == ["sources reordered"]


def test_explain_platform_and_options() -> None:
    new = dataclasses.replace(
        GOLDEN, platform="linux/arm64", extra=(("user", "app"), ("workdir", "/app"))
    )
    assert explain_miss(GOLDEN, new) == [
        "platform changed (linux/amd64 → linux/arm64)",
        "option user changed (root → app)",
    ]


def test_explain_lists_every_changed_field_in_order() -> None:
    new = KeyInputs(parent=BASE_B, instruction="RUN x", env=(), sources=())
    reasons = explain_miss(GOLDEN, new)
    assert reasons[0].startswith("base image changed")
    assert reasons[1] == "instruction text changed"
    assert "source app.py removed" in reasons
    assert reasons[-1] == "option workdir removed"


def _files(**records: str) -> tuple[tuple[str, str], ...]:
    return tuple((name.replace("_", "/"), rec) for name, rec in records.items())


def _copy(files: tuple[tuple[str, str], ...], fingerprint: str) -> KeyInputs:
    return KeyInputs(
        parent=BASE_A,
        instruction="COPY app/ /app/",
        env=(),
        sources=(("context", fingerprint),),
        files=files,
    )


def test_files_are_not_part_of_the_key() -> None:
    with_files = dataclasses.replace(GOLDEN, files=(("a", "file|644|0:0||x"),))
    assert step_key(with_files) == GOLDEN_KEY
    assert inputs_from_json(inputs_to_json(with_files)) == with_files


def test_explain_names_the_changed_file_and_what_changed() -> None:
    from cache.keys import file_record

    old = _copy(_files(app_main=file_record("file", 0o644, 0, 0, "", "aa")), "1")
    new = _copy(_files(app_main=file_record("file", 0o644, 0, 0, "", "bb")), "2")
    assert explain_miss(old, new) == ["file app/main changed (content)"]
    moded = _copy(_files(app_main=file_record("file", 0o600, 0, 0, "", "aa")), "3")
    assert explain_miss(old, moded) == ["file app/main changed (mode)"]


def test_explain_file_added_removed_and_symlink_retargeted() -> None:
    from cache.keys import file_record

    link_a = file_record("symlink", 0o777, 0, 0, "a", "")
    link_b = file_record("symlink", 0o777, 0, 0, "b", "")
    old = _copy(_files(gone="file|644|0:0||1", ln=link_a), "1")
    new = _copy(_files(new="file|644|0:0||1", ln=link_b), "2")
    assert explain_miss(old, new) == [
        "file gone removed",
        "symlink ln changed (link target)",
        "file new added",
    ]


def test_explain_lists_the_first_three_files_then_a_count() -> None:
    old = _copy(tuple((f"f{i}", f"file|644|0:0||{i}") for i in range(6)), "1")
    new = _copy(tuple((f"f{i}", f"file|644|0:0||x{i}") for i in range(6)), "2")
    reasons = explain_miss(old, new)
    assert reasons[:3] == [f"file f{i} changed (content)" for i in range(3)]
    assert reasons[3] == "and 3 more files"


def test_explain_without_file_records_says_the_context_changed() -> None:
    assert explain_miss(_copy((), "1"), _copy((), "2")) == ["files in the build context changed"]


def test_explain_labels_env_and_arg_when_env_names_are_given() -> None:
    old = dataclasses.replace(GOLDEN, env=(("VERSION", "1.0"), ("X", "1")))
    new = dataclasses.replace(GOLDEN, env=(("VERSION", "1.1"), ("X", "2")))
    assert explain_miss(old, new, env_names={"X"}) == [
        "ARG VERSION changed (1.0 → 1.1)",
        "ENV X changed (1 → 2)",
    ]
