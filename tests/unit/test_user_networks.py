"""User networks' pure parts: names, subnets, addresses, routes and /etc/hosts."""

from __future__ import annotations

import stat
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.run.usernets import (
    POOL,
    Member,
    allocate_subnet,
    check_name,
    create,
    hosts_text,
    next_address,
    parse_subnet,
    ready,
    remove,
    unreachable_routes,
)
from runtime import netbridge
from runtime.errors import SandboxError
from runtime.netbridge import free_name, holder_command, host_routes, nsenter_args
from runtime.userns import map_commands, plan_mappings


def member(cid: str, name: str, address: str, *aliases: str) -> Member:
    return Member(cid, name, aliases, address, "pb" + cid, cid[:12], f"/x/{cid}/hosts",
                  f"127.0.0.1\tlocalhost {cid[:12]}\n", 1, 1)  # fmt: skip


@pytest.mark.parametrize("name", ["default", "host", "none", "_a", "a b", "", "x" * 64, "a/b"])
def test_reserved_and_malformed_network_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError):
        check_name(name)


@pytest.mark.parametrize("name", ["n1", "my-net", "a.b_c", "x" * 63])
def test_docker_style_network_names_are_accepted(name: str) -> None:
    check_name(name)


def test_subnets_are_the_first_free_slash24_of_the_pool() -> None:
    assert allocate_subnet([], []) == IPv4Network("10.89.0.0/24")
    taken = [IPv4Network("10.89.0.0/24"), IPv4Network("10.89.2.0/24")]
    assert allocate_subnet(taken, []) == IPv4Network("10.89.1.0/24")


def test_subnets_skip_the_hosts_routes() -> None:
    avoid = [IPv4Network("10.89.0.0/23")]
    assert allocate_subnet([], avoid) == IPv4Network("10.89.2.0/24")


def test_an_exhausted_pool_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="no free /24"):
        allocate_subnet([POOL], [])


@pytest.mark.parametrize("text", ["10.1.2.3/24", "nonsense", "10.0.0.0/30", "fd00::/64"])
def test_bad_subnets_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_subnet(text)


def test_addresses_start_after_the_gateway_and_skip_used_ones() -> None:
    subnet = IPv4Network("10.89.5.0/24")
    assert next_address(subnet, []) == IPv4Address("10.89.5.2")
    assert next_address(subnet, ["10.89.5.2", "10.89.5.4"]) == IPv4Address("10.89.5.3")
    with pytest.raises(UsageError, match="full"):
        next_address(IPv4Network("10.0.0.0/29"), [f"10.0.0.{i}" for i in range(2, 7)])


def test_other_networks_are_unreachable_routes_but_never_our_own() -> None:
    own = IPv4Network("10.89.0.0/24")
    other = IPv4Network("10.89.1.0/24")
    assert unreachable_routes(own, [other]) == [POOL, other]
    assert unreachable_routes(POOL, [IPv4Network("192.168.7.0/24")]) == [
        IPv4Network("192.168.7.0/24")
    ]


def test_hosts_file_names_every_member_and_the_container_itself() -> None:
    me = member("a" * 64, "client", "10.89.0.3")
    web = member("b" * 64, "web", "10.89.0.2", "www", "site")
    text = hosts_text(me, [web, me])
    lines = text.splitlines()
    assert lines[0] == f"127.0.0.1\tlocalhost {'a' * 12}"
    assert f"10.89.0.3\t{'a' * 12} client" in lines
    assert "10.89.0.2\tweb www site" in lines
    assert text.endswith("\n") and len(lines) == 4


def test_the_container_side_interface_avoids_pastas() -> None:
    assert free_name(["lo", "eth0"]) == "eth1"
    assert free_name(["lo", "eth1"]) == "eth2"


def test_host_routes_are_read_from_proc_net_route_without_the_default() -> None:
    table = (
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    assert host_routes(table) == [IPv4Network("192.168.2.0/24")]


def test_missing_tools_are_a_clear_error_before_anything_is_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(netbridge, "missing_tool", lambda: "nsenter")
    for attempt in (lambda: create(tmp_path, "n1"), lambda: ready(tmp_path, "n1")):
        with pytest.raises(UsageError, match="need nsenter") as caught:
            attempt()
        assert caught.value.hint and "util-linux" in caught.value.hint
    assert not (tmp_path / "networks").exists()


def test_a_root_holder_is_a_network_namespace_only() -> None:
    assert holder_command("/u", "/s", False) == ["/u", "--net", "--", "/s", "infinity"]


def test_a_rootless_holder_owns_a_user_namespace_and_waits_for_its_maps() -> None:
    command = holder_command("/u", "/s", True)
    assert command[:4] == ["/u", "--user", "--net", "--"]
    script = command[command.index("-c") + 1]
    # it execs sleep (as $0) only after reading the line that says it is mapped
    assert script.index("read") < script.index('exec "$0" infinity')
    assert command[-1] == "/s"


def test_nsenter_enters_the_holders_user_namespace_first_only_when_it_is_not_ours() -> None:
    assert nsenter_args(5, None) == ["--net=/proc/self/fd/5"]
    assert nsenter_args(5, 6) == [
        "--user=/proc/self/fd/6",
        "--preserve-credentials",  # our ids are its root's: no setuid/setgroups
        "--net=/proc/self/fd/5",
    ]


def test_a_rootless_holders_maps_are_pybuilds_own_rootless_ones(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("alice:100000:65536\n")
    (tmp_path / "subgid").write_text("alice:200000:65536\n")
    plan = plan_mappings(1000, 1001, "alice", subuid=tmp_path / "subuid",
                         subgid=tmp_path / "subgid", helpers=True)  # fmt: skip
    assert map_commands(42, plan) == [
        ["newuidmap", "42", "0", "1000", "1", "1", "100000", "65536"],
        ["newgidmap", "42", "0", "1001", "1", "1", "200000", "65536"],
    ]


def test_network_records_live_in_a_private_store_root(tmp_path: Path) -> None:
    root = tmp_path / "new-store"
    with pytest.raises(UsageError, match="does not exist"):
        remove(root, "n1")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert (root / "networks").is_dir()


@pytest.mark.parametrize("rootless", [False, True])
def test_a_holder_that_cannot_start_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, rootless: bool
) -> None:
    """unshare failing (no user namespaces for unprivileged users, say) is reported with a
    hint, not a hang or a traceback."""
    monkeypatch.setattr(netbridge, "holder_command", lambda *_: ["/bin/sh", "-c", "exit 1"])
    plan = plan_mappings(1000, 1000, "alice", helpers=False) if rootless else None
    with pytest.raises(SandboxError, match="cannot create the network's namespace") as caught:
        netbridge.start_holder(IPv4Interface("10.89.0.1/24"), plan)
    assert caught.value.hint and "user namespaces" in caught.value.hint
