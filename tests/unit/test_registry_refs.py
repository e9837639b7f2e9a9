"""Reference normalisation as docker does it, and when plain HTTP is allowed."""

from __future__ import annotations

import pytest

from cache.distribution.errors import InvalidReference
from cache.distribution.reference import is_insecure, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox"),
        ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox"),
        ("user/app:2", "docker.io/user/app:2", "user/app"),
        ("localhost/app", "localhost/app:latest", "localhost/app"),
        ("localhost:5000/a/b:c", "localhost:5000/a/b:c", "localhost:5000/a/b"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest", "127.0.0.1:5000/app"),
        ("ghcr.io/o/r/x:v1.2", "ghcr.io/o/r/x:v1.2", "ghcr.io/o/r/x"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", "busybox"),
        (f"h:1/r:t@{DIGEST}", f"h:1/r:t@{DIGEST}", "h:1/r"),
    ],
)
def test_reference_normalised_like_docker(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar_name == familiar


def test_docker_hub_is_served_by_registry_1() -> None:
    assert parse_reference("busybox").api_host == "registry-1.docker.io"
    assert parse_reference("h:5000/x").api_host == "h:5000"


def test_digest_reference_asks_manifests_by_digest() -> None:
    ref = parse_reference(f"x:1@{DIGEST}")
    assert ref.object == DIGEST
    assert parse_reference("x:1").object == "1"


@pytest.mark.parametrize(
    "text",
    ["Busybox", "busybox:", "busybox:bad tag", "a//b", f"x@{DIGEST[:-2]}", "x@md5:00", "-x"],
)
def test_malformed_reference_is_rejected_with_hint(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert info.value.hint


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


def test_docker_hub_spellings_normalise_to_the_short_local_name() -> None:
    from builder.frontend.refs import normalize

    assert normalize("library/x:1") == "x:1"
    assert normalize("index.docker.io/x:1") == "x:1"
    assert normalize("docker.io/library/x") == "x:latest"
    assert normalize("library/a/b") == "library/a/b:latest"
    assert normalize("localhost:5000/library/x") == "localhost:5000/library/x:latest"
