"""``pybuild run -p``: docker's publish grammar, free ports, and how they are shown."""

from __future__ import annotations

import socket

import pytest

from builder.errors import UsageError
from builder.run.ports import (
    allocate,
    describe,
    exposed_forwards,
    from_json,
    parse_publish,
    port_lines,
    to_json,
)
from runtime.netns import PortForward


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("8080:80", [PortForward(8080, 80)]),
        ("80", [PortForward(0, 80)]),
        ("127.0.0.1:8080:80", [PortForward(8080, 80, "tcp", "127.0.0.1")]),
        ("127.0.0.1::80", [PortForward(0, 80, "tcp", "127.0.0.1")]),  # a free host port
        ("53:53/udp", [PortForward(53, 53, "udp")]),
        ("8000-8001:80-81", [PortForward(8000, 80), PortForward(8001, 81)]),
        ("[::1]:8080:80", [PortForward(8080, 80, "tcp", "::1")]),
        ("80/TCP", [PortForward(0, 80)]),
    ],
)
def test_publish_grammar_is_dockers(text: str, want: list[PortForward]) -> None:
    assert parse_publish(text) == want


@pytest.mark.parametrize(
    "text", ["", "80/sctp", "x:80", "1.2.3.4:80:90:100", "70000", "90-80:80-90", "a.b:1:2"]
)
def test_bad_publish_values_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_publish(text)
    assert caught.value.hint


def test_exposed_ports_publish_on_free_host_ports() -> None:
    assert exposed_forwards(["80/tcp", "53/udp", "junk"]) == [
        PortForward(0, 80, "tcp"),
        PortForward(0, 53, "udp"),
    ]


def test_allocate_picks_a_free_port_for_host_port_zero() -> None:
    (port,) = allocate([PortForward(0, 80, "tcp", "127.0.0.1")])
    assert port.host_port > 0
    with socket.socket() as sock:  # it was free a moment ago, so it binds now
        sock.bind(("127.0.0.1", port.host_port))


def test_allocate_refuses_one_host_port_twice() -> None:
    with pytest.raises(UsageError, match="published twice"):
        allocate([PortForward(8080, 80), PortForward(8080, 81)])


def test_ports_are_shown_as_docker_ps_and_docker_port_show_them() -> None:
    ports = (PortForward(8080, 80), PortForward(5353, 53, "udp", "127.0.0.1"))
    assert [describe(p) for p in ports] == ["0.0.0.0:8080->80/tcp", "127.0.0.1:5353->53/udp"]
    assert port_lines(ports) == ["80/tcp -> 0.0.0.0:8080", "53/udp -> 127.0.0.1:5353"]
    assert port_lines(ports, "53/udp") == ["53/udp -> 127.0.0.1:5353"]
    assert port_lines(ports, "80") == ["80/tcp -> 0.0.0.0:8080"]


def test_ports_survive_the_container_record() -> None:
    ports = (PortForward(8080, 80), PortForward(5353, 53, "udp", "127.0.0.1"))
    assert from_json(to_json(ports)) == ports
