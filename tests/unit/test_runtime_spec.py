"""ContainerSpec's JSON wire form and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import SandboxError
from runtime.spec import (
    BindMount,
    ContainerSpec,
    Resources,
    Rootfs,
    TmpfsMount,
    spec_from_json,
    spec_to_json,
    validate_spec,
)

texts = st.text(st.characters(codec="utf-8"), max_size=20)
paths = st.builds(Path, st.from_regex(r"/[a-z0-9/_.-]{0,30}", fullmatch=True))

specs = st.builds(
    ContainerSpec,
    rootfs=st.builds(
        Rootfs,
        lowers=st.tuples(paths, paths) | st.just(()),
        upper=paths,
        work=paths,
        volatile=st.booleans(),
    ),
    args=st.lists(texts, min_size=1, max_size=4).map(tuple),
    env=st.lists(texts.map(lambda t: f"K={t}"), max_size=3).map(tuple),
    cwd=texts.map(lambda t: "/" + t),
    user=texts,
    hostname=texts,
    network=st.sampled_from(["host", "none"]),
    mounts=st.lists(
        st.builds(BindMount, paths, texts.map(lambda t: "/" + t), st.booleans()), max_size=3
    ).map(tuple),
    hosts=texts,
    resolv_conf=texts,
    tty=st.booleans(),
    readonly_rootfs=st.booleans(),
    tmpfs=st.lists(
        st.builds(
            TmpfsMount,
            texts.map(lambda t: "/" + t),
            st.none() | st.integers(1, 2**40),
            st.integers(0, 0o7777),
        ),
        max_size=3,
    ).map(tuple),
    resources=st.builds(
        Resources,
        st.none() | st.integers(1, 2**40),
        st.none() | st.integers(1, 2**20),
        st.none() | st.floats(0.01, 64),
    ),
    privileged=st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(specs)
def test_spec_survives_json_round_trip(spec: ContainerSpec) -> None:
    assert spec_from_json(spec_to_json(spec)) == spec


def test_defaults_survive_json_round_trip() -> None:
    spec = ContainerSpec(Rootfs((), Path("/u"), Path("/w")), ("true",))
    assert spec_from_json(spec_to_json(spec)) == spec


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        '{"format": 99}',
        spec_to_json(ContainerSpec(Rootfs((), Path("/u"), Path("/w")), ("x",))).replace(
            '"tty": false', '"tty": "no"'
        ),
        spec_to_json(
            ContainerSpec(Rootfs((), Path("/u"), Path("/w")), ("x",), resources=Resources(pids=3))
        ).replace('"pids": 3', '"pids": true'),
    ],
    ids=["garbage", "empty", "future-format", "wrong-type", "bool-for-int"],
)
def test_malformed_spec_json_raises_sandbox_error(text: str) -> None:
    with pytest.raises(SandboxError, match="malformed container spec"):
        spec_from_json(text)


def _spec(**fields: object) -> ContainerSpec:
    fields.setdefault("args", ("true",))
    return ContainerSpec(Rootfs((), Path("/u"), Path("/w")), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"args": ()}, "no command"),
        ({"cwd": "rel"}, "not absolute"),
        ({"network": "bridge"}, "network 'bridge'"),
        ({"env": ("NOEQUALS",)}, "has no '='"),
        ({"env": ("=value",)}, "empty name"),
        ({"mounts": (BindMount(Path("/x"), "rel"),)}, "mount target 'rel'"),
        ({"tmpfs": (TmpfsMount("rel"),)}, "tmpfs target 'rel'"),
        ({"tmpfs": (TmpfsMount("/t", size=0),)}, "tmpfs size 0"),
        ({"tmpfs": (TmpfsMount("/t", mode=0o10000),)}, "tmpfs mode"),
        ({"resources": Resources(memory=0)}, "memory limit 0"),
        ({"resources": Resources(pids=-1)}, "pids limit -1"),
        ({"resources": Resources(cpus=0.0)}, "cpus 0.0"),
    ],
)
def test_invalid_spec_is_refused_with_the_reason(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(SandboxError, match=problem):
        validate_spec(_spec(**fields))


def test_valid_spec_passes_validation() -> None:
    validate_spec(_spec(env=("A=1", "B="), cwd="/w", network="none"))
