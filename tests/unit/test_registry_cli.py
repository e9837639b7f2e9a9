"""The registry CLI's pure parts: push targets, -o type=registry, docker's config dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.exporters.outputs import Output, parse_output
from builder.exporters.push_targets import push_targets


def test_registry_output_takes_an_optional_name() -> None:
    assert parse_output("type=registry") == Output("registry", Path(), None)
    named = parse_output("type=registry,name=reg:5000/app:1,push=true")
    assert named == Output("registry", Path(), "reg:5000/app:1")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("type=registry,dest=out", "takes no dest"),
        ("type=registry,compression=lz4", "unknown compression"),
        ("type=registry,force-compression=maybe", "expected true or false"),
        ("type=registry,push=false", "always pushes"),
        ("type=registry,oops=1", "takes no oops"),
    ],
)
def test_registry_output_rejects_what_it_cannot_do(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_output(spec)


def test_push_targets_are_the_tags_or_the_output_names_once_each() -> None:
    tags = ("docker.io/library/app:1", "reg:5000/app:1")
    named = parse_output("type=registry,name=reg:5000/other:2")
    assert push_targets(True, [], tags) == tags
    assert push_targets(False, [parse_output("type=registry")], tags) == tags
    assert push_targets(True, [named], tags) == (*tags, "reg:5000/other:2")
    assert push_targets(False, [parse_output("type=oci,dest=x.tar")], tags) == ()


def test_a_push_without_any_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--push needs a name"):
        push_targets(True, [], ())
    with pytest.raises(UsageError, match="type=registry needs a name"):
        push_targets(False, [parse_output("type=registry")], ())


def test_docker_config_is_docker_config_env_else_home_dot_docker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from builder.cli.registry_commands import default_docker_config

    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_docker_config() == tmp_path / ".docker"
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "elsewhere"))
    assert default_docker_config() == tmp_path / "elsewhere"
