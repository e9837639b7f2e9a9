"""``POST /build`` query parameters as ``pybuild build`` flags, and the request body
reader (chunked or with a length)."""

from __future__ import annotations

import io
import json
import socket
from urllib.parse import urlencode

import pytest

from builder.engine.build import build_args
from builder.engine.errors import ApiError
from builder.engine.wire import Request


def request(query: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Request:
    left, _right = socket.socketpair()
    return Request.make("POST", "/build", query, headers or {}, io.BytesIO(body), left)


def test_query_parameters_become_build_flags() -> None:
    query = urlencode(
        [
            ("t", "app:1"),
            ("t", "app:latest"),
            ("buildargs", json.dumps({"A": "1", "UNSET": None})),
            ("labels", json.dumps({"team": "x"})),
            ("target", "final"),
            ("nocache", "1"),
            ("pull", "True"),  # docker-py sends Python's spelling
            ("networkmode", "host"),
            ("platform", "linux/amd64"),
            ("rm", "1"),
            ("cachefrom", "[]"),
        ]
    )
    assert build_args(request(query)) == [
        "-t", "app:1", "-t", "app:latest", "--build-arg", "A=1", "--label", "team=x",
        "--target", "final", "--no-cache", "--pull", "--network", "host",
        "--platform", "linux/amd64",
    ]  # fmt: skip


def test_classic_default_network_modes_are_the_default_network() -> None:
    for mode in ("", "default", "bridge"):
        assert build_args(request(urlencode({"networkmode": mode}))) == ["--network", "default"]


def test_unknown_network_mode_and_bad_json_are_bad_requests() -> None:
    with pytest.raises(ApiError) as caught:
        build_args(request("networkmode=container:x"))
    assert caught.value.status == 400
    with pytest.raises(ApiError) as caught:
        build_args(request("buildargs=%7Bnope"))
    assert caught.value.status == 400 and "buildargs" in caught.value.message


def test_chunked_body_is_read_to_its_end() -> None:
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    got = request("", body, {"transfer-encoding": "chunked"})
    assert got.body() == b"hello world" and got.read() == b""


def test_body_with_a_length_stops_at_it() -> None:
    got = request("", b"abcdefNEXT REQUEST", {"content-length": "6"})
    assert got.body() == b"abcdef"
