"""Image references: one grammar (docker's distribution/reference) for registry
references and local names."""

from __future__ import annotations

import pytest

from builder.errors import UsageError
from builder.images.names import normalize
from cache.distribution.errors import InvalidReference
from cache.distribution.reference import parse_reference

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


def test_docker_hub_spellings_normalise_to_the_short_local_name() -> None:
    assert normalize("library/x:1") == "x:1"
    assert normalize("index.docker.io/x:1") == "x:1"
    assert normalize("docker.io/library/x") == "x:latest"
    assert normalize("library/a/b") == "library/a/b:latest"
    assert normalize("localhost:5000/library/x") == "localhost:5000/library/x:latest"


def test_library_is_dropped_only_before_a_one_part_name() -> None:
    assert parse_reference("library/a/b").familiar_name == "library/a/b"
    assert parse_reference("docker.io/library/a/b:1").familiar_name == "library/a/b"


@pytest.mark.parametrize(
    "text", ["foo-/bar", "-foo.io/bar", "my_host.io/x", "a.-b.io/x", "host.io:/x"]
)
def test_a_registry_domain_follows_dockers_domain_grammar(text: str) -> None:
    with pytest.raises(InvalidReference, match=r"bad registry name|repository names"):
        parse_reference(text)
    with pytest.raises(UsageError):
        normalize(text)


def test_the_length_limit_counts_the_repository_path_not_the_domain() -> None:
    # docker.io/library/NAME: "library/" counts, "docker.io/" does not
    assert normalize("a" * 247) == "a" * 247 + ":latest"
    assert str(parse_reference("h.io/" + "a" * 255)) == "h.io/" + "a" * 255 + ":latest"
    for bad in ("a" * 248, "h.io/" + "a" * 256):
        with pytest.raises(InvalidReference, match="must not be more than 255 characters"):
            parse_reference(bad)
        with pytest.raises(UsageError, match=r"'a{77}\.\.\.'"):
            normalize(bad.removeprefix("h.io/"))


@pytest.mark.parametrize("bad", ["localhost:65536/x", "localhost:0/x", "localhost:123456/x"])
def test_a_registry_port_is_1_to_65535(bad: str) -> None:
    with pytest.raises(InvalidReference, match="out of range"):
        parse_reference(bad)
    with pytest.raises(UsageError, match="out of range"):
        normalize(bad)
    assert parse_reference("localhost:65535/x").registry == "localhost:65535"


def test_local_names_are_usage_errors_with_the_grammars_message() -> None:
    with pytest.raises(UsageError, match="invalid image reference 'Busybox'") as info:
        normalize("Busybox")
    assert info.value.hint
    with pytest.raises(UsageError, match="digests are not supported for local names"):
        normalize(f"busybox@{DIGEST}")
