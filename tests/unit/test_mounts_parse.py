"""RUN --mount parsing, and the --secret/--ssh/--allow build flags (no root needed)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from builder.errors import DockerfileError, UsageError
from builder.ops.secrets import (
    agent_relay,
    parse_allow,
    parse_secret_flag,
    parse_ssh_flag,
    read_secret,
)
from builder.plan.mounts import parse_mount
from builder.plan.specs import MountSpec


def _no_stage(ref: str) -> int:
    raise AssertionError(f"no stage lookup expected, got {ref}")


def test_cache_mount_defaults_follow_buildkit() -> None:
    mount = parse_mount("type=cache,target=/root/.cache/", _no_stage)
    assert mount == MountSpec("cache", "/root/.cache", readonly=False, id="/root/.cache")
    assert (mount.sharing, mount.mode, mount.uid, mount.gid) == ("shared", 0o755, 0, 0)


def test_cache_mount_options_are_parsed() -> None:
    mount = parse_mount(
        "type=cache,id=pip,dst=/c,sharing=locked,mode=0700,uid=10,gid=20,from=deps,source=/d,ro",
        lambda ref: {"deps": 3}[ref],
    )
    assert (mount.id, mount.target, mount.sharing, mount.mode) == ("pip", "/c", "locked", 0o700)
    assert (mount.uid, mount.gid, mount.from_stage, mount.source) == (10, 20, 3, "/d")
    assert mount.readonly


def test_cache_mount_owner_settings_make_their_own_cache_unless_a_source_is_given() -> None:
    assert parse_mount("type=cache,target=/c,mode=0755", _no_stage).owner_set
    assert parse_mount("type=cache,target=/c,uid=0", _no_stage).owner_set
    assert not parse_mount("type=cache,target=/c", _no_stage).owner_set
    # BuildKit ignores mode/uid/gid when source= selects a path (convert_runmount.go).
    assert not parse_mount("type=cache,target=/c,mode=0700,source=sub", _no_stage).owner_set


def test_secret_target_defaults_to_run_secrets_id() -> None:
    mount = parse_mount("type=secret,id=npm", _no_stage)
    assert (mount.target, mount.mode, mount.required) == ("/run/secrets/npm", 0o400, False)


def test_secret_id_defaults_to_target_basename() -> None:
    assert parse_mount("type=secret,target=/etc/token,required", _no_stage).id == "token"


def test_secret_with_env_only_has_no_file() -> None:
    mount = parse_mount("type=secret,id=k,env=API_KEY", _no_stage)
    assert (mount.target, mount.env) == ("", "API_KEY")


def test_ssh_mount_defaults() -> None:
    mount = parse_mount("type=ssh", _no_stage)
    assert (mount.id, mount.target, mount.mode, mount.required) == ("default", "", 0o600, False)


def test_mount_key_text_names_definition_not_secret_source() -> None:
    text = parse_mount("type=secret,id=tok,env=T", _no_stage).describe()
    assert "id=tok" in text and "env=T" in text


def test_bind_describe_has_normalised_paths() -> None:
    mount = parse_mount("target=/src,source=app", _no_stage)
    assert mount.describe() == "type=bind,target=/src,source=/app,from=None,ro=True,size=None"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("type=weird,target=/x", 'unsupported mount type "weird"'),
        ("type=tmpfs,target=/x,id=y", "unexpected key 'id' for type=tmpfs"),
        ("type=cache,target=/x,sharing=all", "invalid sharing 'all'"),
        ("type=cache,target=/x,uid=root", "uid/gid numbers"),
        ("type=cache,target=/x,mode=77777", "out of range"),
        ("type=secret,required=yes,id=a", "required=yes is not true or false"),
        ("type=secret", "a secret needs id="),
        ("type=cache,target=/x,junk", "'junk' is not KEY=VALUE"),
    ],
)
def test_bad_mount_values_raise_dockerfile_errors(raw: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message.replace("(", r"\(")) as info:
        parse_mount(raw, _no_stage)
    assert info.value.line is None  # the caller adds the Dockerfile location


def test_secret_flag_forms() -> None:
    env = {"TOKEN": "t"}
    assert parse_secret_flag("id=a,src=/f", env).file == Path("/f")
    assert parse_secret_flag("id=a,source=/f", env).file == Path("/f")
    assert parse_secret_flag("id=a,env=TOKEN", env).env == "TOKEN"
    assert parse_secret_flag("id=TOKEN", env).env == "TOKEN"  # set in the environment
    assert parse_secret_flag("id=other", env).file == Path("other")
    assert parse_secret_flag("type=env,id=TOKEN", env).env == "TOKEN"


@pytest.mark.parametrize(
    "raw", ["src=/f", "id=a,src=/f,env=X", "id=a,type=socket", "id=a,colour=red", "id"]
)
def test_bad_secret_flags_are_usage_errors(raw: str) -> None:
    with pytest.raises(UsageError):
        parse_secret_flag(raw, {})


def test_read_secret_never_shows_the_value_in_errors(tmp_path: Path) -> None:
    source = parse_secret_flag("id=a,env=MISSING", {})
    with pytest.raises(Exception, match="MISSING is not set"):
        read_secret(source, {})
    assert read_secret(parse_secret_flag("id=a,env=V", {}), {"V": "x"}) == b"x"


def test_ssh_flag_takes_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert parse_ssh_flag(f"work={path}", {}).socket == path
        assert parse_ssh_flag("default", {"SSH_AUTH_SOCK": str(path)}).id == "default"
    with pytest.raises(UsageError, match="SSH_AUTH_SOCK is not set"):
        parse_ssh_flag("default", {})
    with pytest.raises(UsageError, match="cannot use"):
        parse_ssh_flag(f"default={tmp_path / 'nope'}", {})


def test_allow_knows_its_entitlements() -> None:
    assert parse_allow(["security.insecure"]) is True
    assert parse_allow(["network.host"]) is False
    with pytest.raises(UsageError, match="unknown entitlement"):
        parse_allow(["device"])


def test_agent_relay_forwards_both_ways_with_its_own_mode(tmp_path: Path) -> None:
    agent_path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as agent:
        agent.bind(str(agent_path))
        agent.listen(1)
        with agent_relay(agent_path, 0o660, os.getuid(), os.getgid()) as relay:
            assert relay.stat().st_mode & 0o777 == 0o660
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(relay))
                client.sendall(b"request")
                client.shutdown(socket.SHUT_WR)  # the answer must still come back
                conn, _ = agent.accept()
                with conn:
                    assert conn.recv(100) == b"request"
                    conn.sendall(b"answer")
                assert client.recv(100) == b"answer"
        assert not relay.exists()
