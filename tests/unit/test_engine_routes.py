"""The engine's routing, version prefixes and wire formats (no server, no root)."""

from __future__ import annotations

import struct

import pytest

from builder.engine import containers, images, routes, system
from builder.engine.errors import ApiError
from builder.engine.wire import frame


def test_version_prefix_is_taken_off() -> None:
    assert routes.strip_version("/v1.41/containers/json") == "/containers/json"
    assert routes.strip_version("/v1.24/_ping") == "/_ping"
    assert routes.strip_version("/_ping") == "/_ping"


@pytest.mark.parametrize(
    ("path", "word"), [("/v1.50/version", "too new"), ("/v1.12/version", "too old")]
)
def test_versions_outside_the_served_range_are_refused_with_docker_s_message(
    path: str, word: str
) -> None:
    with pytest.raises(ApiError) as caught:
        routes.strip_version(path)
    assert caught.value.status == 400 and word in caught.value.message


def test_image_names_with_registries_and_tags_reach_their_endpoint() -> None:
    endpoint, params = routes.find("GET", "/images/127.0.0.1:5000/team/app:1/json")
    assert endpoint is images.inspect and params == {"name": "127.0.0.1:5000/team/app:1"}
    endpoint, params = routes.find("DELETE", "/images/app:1")
    assert endpoint is images.remove and params == {"name": "app:1"}


def test_listing_routes_win_over_the_per_item_ones() -> None:
    assert routes.find("GET", "/images/json")[0] is images.list_images
    assert routes.find("GET", "/containers/json")[0] is containers.list_containers
    assert routes.find("HEAD", "/_ping")[0] is system.ping


def test_docker_endpoints_pybuild_lacks_are_not_implemented() -> None:
    with pytest.raises(ApiError) as caught:
        routes.find("POST", "/containers/abc/exec")
    assert caught.value.status == 501
    assert "not implemented by pybuild" in caught.value.message


def test_unknown_paths_are_not_found() -> None:
    with pytest.raises(ApiError) as caught:
        routes.find("GET", "/nothing/here")
    assert caught.value.status == 404


def test_multiplexed_frame_has_the_stream_type_and_length_header() -> None:
    data = frame(1, b"hello\n")
    assert data[:8] == struct.pack(">BxxxL", 1, 6) and data[8:] == b"hello\n"
