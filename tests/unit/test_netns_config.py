"""How a private network is configured: pasta's command line and the resolv.conf inside."""

from __future__ import annotations

from pathlib import Path

from runtime.netns import DNS_FORWARD, PortForward, pasta_args, resolv_conf_inside


def test_pasta_never_maps_the_gateway_or_forwards_namespace_ports_to_the_host() -> None:
    args = pasta_args(Path("/x/ns"), Path("/x/ns.pid"), (), forward_dns=False)
    assert "--no-map-gw" in args
    assert args[args.index("-T") + 1] == "none"
    assert args[args.index("-U") + 1] == "none"
    assert args[args.index("-t") + 1] == "none"  # pasta's default would be "auto"
    assert args[args.index("-u") + 1] == "none"
    assert args[-4:] == ["--netns", "/x/ns", "--pid", "/x/ns.pid"]
    assert "--dns-forward" not in args


def test_published_ports_become_pasta_forwards() -> None:
    ports = (PortForward(18080, 8000, "tcp", "127.0.0.1"), PortForward(5353, 53, "udp"))
    args = pasta_args(Path("/x/ns"), Path("/x/ns.pid"), ports, forward_dns=False)
    assert args[args.index("-t") + 1] == "127.0.0.1/18080:8000"
    assert args[args.index("-u") + 1] == "5353:53"


def test_resolv_conf_is_the_hosts_when_its_resolvers_are_reachable() -> None:
    text = "search example.org\nnameserver 10.0.0.53\n"
    assert resolv_conf_inside(text) == ("", False)


def test_a_loopback_first_resolver_is_reached_through_dns_forwarding() -> None:
    text = "nameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.53\noptions edns0\n"
    inside, forward = resolv_conf_inside(text)
    assert forward
    assert inside == f"nameserver {DNS_FORWARD}\nnameserver 10.0.0.53\noptions edns0\n"


def test_later_loopback_resolvers_are_dropped() -> None:
    inside, forward = resolv_conf_inside("nameserver 10.0.0.53\nnameserver 127.0.0.1\n")
    assert not forward
    assert inside == "nameserver 10.0.0.53\n"
