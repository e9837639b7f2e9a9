"""A container create body as ``pybuild run -d`` flags (builder.engine.runflags)."""

from __future__ import annotations

from typing import Any

import pytest

from builder.engine.errors import ApiError
from builder.engine.runflags import check_create, run_argv


def argv(body: dict[str, Any], networks: tuple[str, ...] = ()) -> list[str]:
    return run_argv(body, "c1", "app:1", lambda name: "" if name in networks else None)


def test_plain_body_runs_the_image_default_command() -> None:
    assert argv({"Image": "app:1"}) == ["run", "-d", "--name", "c1", "--log-streams", "app:1"]


def test_env_workdir_user_and_cmd_become_run_flags() -> None:
    body = {"Env": ["A=1"], "WorkingDir": "/w", "User": "1:2", "Cmd": ["echo", "hi"]}
    assert argv(body)[5:] == ["-e", "A=1", "-w", "/w", "-u", "1:2", "app:1", "echo", "hi"]


def test_entrypoint_list_sets_the_entrypoint_and_leads_the_arguments() -> None:
    tail = argv({"Entrypoint": ["sh", "-c"], "Cmd": ["echo x"]})[5:]
    assert tail == ["--entrypoint", "sh", "app:1", "-c", "echo x"]


def test_empty_entrypoint_clears_the_image_s() -> None:
    assert argv({"Entrypoint": [""]})[5:] == ["--entrypoint", "", "app:1"]


def test_host_config_limits_mounts_and_init() -> None:
    host = {
        "Binds": ["/srv:/srv:ro", "data:/data:rw"],
        "Tmpfs": {"/run": "size=1m"},
        "Memory": 67108864,
        "PidsLimit": 50,
        "NanoCpus": 1500000000,
        "Init": True,
        "NetworkMode": "none",
    }
    tail = argv({"HostConfig": host})[5:]
    assert tail == [
        "--network", "none", "-v", "/srv:/srv:ro", "-v", "data:/data", "--tmpfs", "/run:size=1m",
        "--memory", "67108864", "--pids-limit", "50", "--cpus", "1.5", "--init", "app:1",
    ]  # fmt: skip


def test_network_made_through_the_api_runs_on_the_default_network() -> None:
    assert argv({"HostConfig": {"NetworkMode": "shop_default"}}, ("shop_default",))[5:] == ["app:1"]


def test_unknown_network_mode_is_refused() -> None:
    with pytest.raises(ApiError) as caught:
        argv({"HostConfig": {"NetworkMode": "container:other"}})
    assert caught.value.status == 400 and "container:other" in caught.value.message


@pytest.mark.parametrize("key", ["Tty", "OpenStdin"])
def test_tty_and_stdin_are_refused_with_the_way_out(key: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_create({"Image": "app:1", key: True})
    assert caught.value.status == 400 and "drop" in caught.value.message


def test_pybuild_user_network_is_joined_with_the_aliases() -> None:
    tail = run_argv(
        {"HostConfig": {"NetworkMode": "shop_default"}},
        "c1",
        "app:1",
        lambda name: name if name == "shop_default" else None,
        ["web", "web", "c1"],
    )[5:]
    assert tail == [
        "--network", "shop_default", "--network-alias", "web", "--network-alias", "c1", "app:1"
    ]  # fmt: skip
