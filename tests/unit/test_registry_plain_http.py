"""When the registry client may use plain HTTP for a registry, as docker decides."""

from __future__ import annotations

import pytest

from cache.distribution.reference import is_insecure


@pytest.mark.parametrize(
    ("host", "listed", "insecure"),
    [
        ("localhost:5000", (), True),
        ("127.0.0.1:5000", (), True),
        ("127.9.9.9", (), True),
        ("[::1]:5000", (), True),
        ("registry.example:5000", (), False),
        ("registry.example:5000", ("registry.example:5000",), True),
        ("registry.example:5000", ("registry.example",), True),
        ("10.1.2.3:5000", ("10.0.0.0/8",), True),
        ("10.1.2.3:5000", ("192.168.0.0/16",), False),
        ("docker.io", (), False),
    ],
)
def test_plain_http_only_for_loopback_or_listed(
    host: str, listed: tuple[str, ...], insecure: bool
) -> None:
    assert is_insecure(host, listed) is insecure
