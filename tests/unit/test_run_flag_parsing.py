"""How `pybuild run` reads its flags: sizes, tmpfs, env files, hosts, volumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.run.container_spec import (
    bind_mounts,
    hosts_file,
    parse_bytes,
    parse_resources,
    read_env_files,
    tmpfs_mounts,
)
from runtime.spec import Resources, TmpfsMount


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1048576", 2**20),
        ("512m", 512 * 2**20),
        ("2G", 2 * 2**30),
        ("64k", 65536),
        ("1.5g", 3 * 2**29),
        ("10mb", 10 * 2**20),
    ],
)
def test_sizes_use_docker_units(text: str, expected: int) -> None:
    assert parse_bytes(text, "--memory") == expected


@pytest.mark.parametrize("text", ["", "lots", "-1m", "0", "5x"])
def test_bad_sizes_are_usage_errors_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="--memory"):
        parse_bytes(text, "--memory")


def test_non_positive_pids_limit_means_unlimited() -> None:
    assert parse_resources(None, 0, None) == Resources()
    assert parse_resources("1g", 10, 1.5) == Resources(2**30, 10, 1.5)


def test_tmpfs_options_give_size_and_mode() -> None:
    assert tmpfs_mounts(("/run", "/cache:size=64m,mode=700")) == (
        TmpfsMount("/run"),
        TmpfsMount("/cache", 64 * 2**20, 0o700),
    )


def test_tmpfs_unknown_option_is_refused() -> None:
    with pytest.raises(UsageError, match="unsupported option 'uid=1'"):
        tmpfs_mounts(("/x:uid=1",))


def test_env_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.write_text("# comment\n\nA=1\n  B=two words\nC\n")
    assert read_env_files((env,)) == ("A=1", "B=two words", "C")


def test_missing_env_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--env-file"):
        read_env_files((tmp_path / "nope",))


def test_add_host_lines_follow_localhost() -> None:
    text = hosts_file("box", ("db:10.0.0.5", "v6:fe80::1"))
    assert text.splitlines()[0] == "127.0.0.1\tlocalhost box"
    assert text.splitlines()[-2:] == ["10.0.0.5\tdb", "fe80::1\tv6"]


def test_add_host_without_ip_is_refused() -> None:
    with pytest.raises(UsageError, match="HOST:IP"):
        hosts_file("box", ("db",))


def test_named_volume_lives_under_the_store(tmp_path: Path) -> None:
    (mount,) = bind_mounts(("data:/var/data:ro",), tmp_path)
    assert mount.source == tmp_path / "volumes" / "data" / "_data"
    assert mount.source.is_dir() and mount.readonly and mount.target == "/var/data"


def test_relative_host_path_with_slash_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="absolute"):
        bind_mounts(("./x:/y",), tmp_path)
