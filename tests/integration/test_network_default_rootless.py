"""The default network without root: a real unprivileged user builds and runs (see
tests/integration/rootless_users.py); pasta then runs in the user's own namespaces and
must open /dev/net/tun, which distributions make 0666 (this is checked, not assumed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clihelp import Result, write_context
from tests.integration.nethelp import (
    ABSTRACT_PROBE,
    LOOPBACK_PROBE,
    PACKET_PROBE,
    Build,
    abstract_listener,
    free_port,
    http_get,
    loopback_listener,
    marker_traffic,
    probe,
)
from tests.integration.rootless_users import (
    ROOTLESS_PASTA_MARKS,
    User,
    loaded_user,
    remove_user,
)

pytestmark = ROOTLESS_PASTA_MARKS

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def user(base_archive: Path, debian_archive: Path) -> Iterator[User]:
    """A user with a subordinate id range, busybox and the Debian base loaded."""
    made = loaded_user(True, base_archive, debian_archive)
    try:
        yield made
    finally:
        remove_user(made.name)


def _builder(user: User) -> Build:
    def build(ctx: Path, *flags: str) -> Result:
        user.give(ctx)
        return user.pybuild("build", "--progress", "plain", *flags, ctx)

    return build


def test_rootless_default_run_downloads_from_pypi(user: User) -> None:
    dockerfile = """\
FROM debian-py:bookworm
COPY ca.crt /ca.crt
RUN pip download --no-deps --cert /ca.crt -d /tmp/x six && ls /tmp/x
"""
    ctx = user.give(
        write_context(user.home / "pip", {"ca.crt": CA_BUNDLE.read_bytes()}, dockerfile)
    )
    done = user.pybuild("build", "--progress", "plain", "--no-cache", ctx)
    assert "Saved /tmp/x/six-" in done.out + done.err, done.err


def test_rootless_default_run_cannot_reach_a_host_loopback_listener(user: User) -> None:
    with loopback_listener() as (port, listener):
        lines = probe(_builder(user), user.home / "lo", LOOPBACK_PROBE, str(port), False)
    assert not [line for line in lines if "CONNECTED" in line], lines
    assert len(lines) == 2, lines
    assert listener.accepted == 0


def test_rootless_default_run_cannot_reach_a_host_abstract_unix_socket(user: User) -> None:
    with abstract_listener() as (name, listener):
        lines = probe(_builder(user), user.home / "abs", ABSTRACT_PROBE, name, False)
    assert lines[0].startswith("PROBE FAILED"), lines
    assert listener.accepted == 0


def test_rootless_default_run_packet_socket_sees_no_host_traffic(user: User) -> None:
    marker = f"pybuild-marker-{uuid.uuid4().hex}"
    with marker_traffic(marker):
        lines = probe(_builder(user), user.home / "pkt", PACKET_PROBE, marker, False)
    assert len(lines) == 1, lines
    assert lines[0].endswith("MARKER-ABSENT"), lines


def test_rootless_published_port_answers_on_the_host(user: User) -> None:
    www = user.home / "www"
    www.mkdir()
    (www / "index.html").write_text("hello rootless\n")
    user.give(www)
    port = free_port()
    name = f"web{uuid.uuid4().hex[:6]}"
    user.pybuild(
        "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "-v", f"{www}:/www:ro",
        "busybox", "httpd", "-f", "-p", "8000", "-h", "/www",
    )  # fmt: skip
    try:
        assert http_get(port) == (200, "hello rootless\n")
        assert f"127.0.0.1:{port}->8000/tcp" in user.pybuild("ps").out
    finally:
        user.pybuild("rm", "-f", name, ok=False)
