"""User-defined networks without root: a real unprivileged user (see
tests/integration/rootless_users.py) creates networks and runs containers on them. Each
network's holder owns a user namespace of the user's (mapped as pybuild's rootless one)
beside the bridge's network namespace; pasta still gives outbound access and -p, and
must open /dev/net/tun, which distributions make 0666 (checked, not assumed)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.netbridge import Holder, alive
from tests.integration.nethelp import NC_GET, free_port, http_get
from tests.integration.rootless_users import (
    ROOTLESS_PASTA_MARKS,
    User,
    loaded_user,
    remove_user,
)

OUTSIDE = "pypi.org"


pytestmark = [
    *ROOTLESS_PASTA_MARKS,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("ip", "nsenter", "newuidmap", "newgidmap")),
        reason="needs ip (iproute2), nsenter (util-linux), newuidmap and newgidmap (uidmap)",
    ),
]


@pytest.fixture(scope="module")
def user(base_archive: Path) -> Iterator[User]:
    """A user with a subordinate id range and busybox loaded."""
    made = loaded_user(True, base_archive)
    try:
        yield made
    finally:
        remove_user(made.name)


@pytest.fixture(scope="module")
def single_user(base_archive: Path) -> Iterator[User]:
    """A user without a subordinate range (single-id mapping) and busybox loaded."""
    made = loaded_user(False, base_archive)
    try:
        yield made
    finally:
        remove_user(made.name)


def serve(user: User, *flags: str) -> None:
    """``web`` (alias ``www``) on n1 serving "hello from web" with busybox httpd; returns
    once a container on n1 gets the page by name."""
    www = user.home / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("hello from web\n")
    user.give(www)
    httpd = ("busybox", "httpd", "-f", "-p", "8000", "-h", "/www")
    user.pybuild("run", "-d", "--name", "web", "--network", "n1", "--network-alias", "www",
                 *flags, "-v", f"{www}:/www:ro", *httpd)  # fmt: skip
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # httpd listening
        if "hello" in user.pybuild("run", "--rm", "--network", "n1", "busybox", "sh", "-c",
                                   NC_GET.format(host="web"), ok=False).out:  # fmt: skip
            return
        time.sleep(0.2)
    raise AssertionError("web never answered")


def holder_of(user: User, name: str) -> Holder:
    body = json.loads((user.home / ".local/share/pybuild/networks" / f"{name}.json").read_text())
    return Holder(body["holder_pid"], body["holder_start"])


def uid_map(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/uid_map").read_text().split()


def test_rootless_containers_on_one_network_reach_each_other_by_name(user: User) -> None:
    user.pybuild("network", "create", "n1")
    port = free_port()
    try:
        # The holder is the user's, in a user namespace of its own mapped as pybuild's
        # rootless one (root = the user, then the subordinate range).
        holder = holder_of(user, "n1")
        assert alive(holder)
        assert os.stat(f"/proc/{holder.pid}").st_uid == os.stat(user.home).st_uid
        assert os.stat(f"/proc/{holder.pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino
        owner = str(os.stat(user.home).st_uid)
        assert uid_map(holder.pid)[:5] == ["0", owner, "1", "1", str(user.subuid)]
        serve(user, "-p", f"127.0.0.1:{port}:8000")
        for host in ("web", "www"):
            out = user.pybuild("run", "--rm", "--network", "n1", "--name", "client", "busybox",
                               "sh", "-c", NC_GET.format(host=host)).out  # fmt: skip
            assert "hello from web" in out
        # -p works on a user network rootless too (pasta in the container's namespace)
        assert http_get(port) == (200, "hello from web\n")
        doc = json.loads(user.pybuild("network", "inspect", "n1").out)[0]
        (member,) = doc["Containers"].values()
        assert member["Name"] == "web" and member["Aliases"] == ["www"]
        assert "n1 (10.89." in user.pybuild("ps").out
        # the default route stays pasta's (eth0): outbound traffic does not use the bridge
        routes = user.pybuild("run", "--rm", "--network", "n1", "busybox", "ip", "route").out
        assert "default via" in routes and "eth0" in routes.split("default via")[1].split("\n")[0]
    finally:
        user.pybuild("rm", "-f", "web", ok=False)
        user.pybuild("network", "rm", "n1", ok=False)


def test_rootless_container_on_another_network_cannot_reach_web(user: User) -> None:
    user.pybuild("network", "create", "n1")
    user.pybuild("network", "create", "n2")
    try:
        serve(user)
        doc = json.loads(user.pybuild("network", "inspect", "n1").out)[0]
        address = next(iter(doc["Containers"].values()))["IPv4Address"].split("/")[0]
        get = NC_GET.format
        script = f"grep -w web /etc/hosts; {get(host='web')}; {get(host=address)}"
        started = time.monotonic()
        out = user.pybuild("run", "--rm", "--network", "n2", "busybox", "sh", "-c", script,
                           ok=False)  # fmt: skip
        assert "hello" not in out.out and "web" not in out.out
        assert "bad address" in out.err  # the name does not resolve
        assert "No route to host" in out.err  # the address fails at once, no time-out
        assert time.monotonic() - started < 10
        # while a container on n1 still gets the page by address
        on_n1 = user.pybuild("run", "--rm", "--network", "n1", "busybox", "sh", "-c",
                             get(host=address)).out  # fmt: skip
        assert "hello from web" in on_n1
        # the two networks' holders share no namespace
        one, two = holder_of(user, "n1"), holder_of(user, "n2")
        for kind in ("user", "net"):
            ns = [os.stat(f"/proc/{h.pid}/ns/{kind}").st_ino for h in (one, two)]
            assert ns[0] != ns[1], kind
    finally:
        user.pybuild("rm", "-f", "web", ok=False)
        user.pybuild("network", "rm", "n1", "n2", ok=False)


def test_rootless_network_in_use_is_not_removed(user: User) -> None:
    user.pybuild("network", "create", "n1")
    holder = holder_of(user, "n1")
    try:
        serve(user)
        refused = user.pybuild("network", "rm", "n1", ok=False)
        assert refused.code != 0 and "Traceback" not in refused.err
        assert "network 'n1' has running containers: web" in refused.err
        assert "pybuild rm -f web" in refused.err
        assert alive(holder)
        user.pybuild("rm", "-f", "web")
        user.pybuild("network", "rm", "n1")
        assert not alive(holder)
        assert "n1" not in user.pybuild("network", "ls").out
    finally:
        user.pybuild("rm", "-f", "web", ok=False)
        user.pybuild("network", "rm", "n1", ok=False)


def _connects_out(user: User, *network: str) -> str:
    """Whether a container connects to PyPI's HTTPS port (as the default-network tests'
    pip does): "CONNECTED", or nc's complaint."""
    script = f"timeout 10 nc {OUTSIDE} 443 </dev/null && echo CONNECTED"
    done = user.pybuild("run", "--rm", *network, "busybox", "sh", "-c", script, ok=False)
    return (done.out + done.err).strip()


def test_rootless_container_on_a_user_network_reaches_out(user: User) -> None:
    """What the default network reaches (pasta), a container on a user network reaches."""
    default = _connects_out(user)
    if "CONNECTED" not in default:
        pytest.skip(
            f"a rootless container on the default network cannot connect to {OUTSIDE}:443 "
            f"here either ({default!r}): no outbound access to compare"
        )
    user.pybuild("network", "create", "n1")
    try:
        assert "CONNECTED" in _connects_out(user, "--network", "n1")
    finally:
        user.pybuild("network", "rm", "n1", ok=False)


def test_rootless_single_id_user_networks_work_too(single_user: User) -> None:
    single_user.pybuild("network", "create", "n1")
    try:
        holder = holder_of(single_user, "n1")
        owner = str(os.stat(single_user.home).st_uid)
        assert uid_map(holder.pid) == ["0", owner, "1"]
        serve(single_user)
        out = single_user.pybuild("run", "--rm", "--network", "n1", "busybox", "sh", "-c",
                                  NC_GET.format(host="www")).out  # fmt: skip
        assert "hello from web" in out
    finally:
        single_user.pybuild("rm", "-f", "web", ok=False)
        single_user.pybuild("network", "rm", "n1", ok=False)


def test_users_networks_are_their_own(user: User, single_user: User) -> None:
    """The same name on two users' stores is two networks; neither sees the other's."""
    user.pybuild("network", "create", "n1")
    try:
        assert "n1" not in single_user.pybuild("network", "ls").out
        absent = single_user.pybuild("run", "--rm", "--network", "n1", "busybox", "true",
                                     ok=False)  # fmt: skip
        assert absent.code != 0 and "network 'n1' does not exist" in absent.err
        serve(user)
        single_user.pybuild("network", "create", "n1")
        try:
            holder = holder_of(user, "n1")
            other = holder_of(single_user, "n1")
            assert holder.pid != other.pid
            out = single_user.pybuild("run", "--rm", "--network", "n1", "busybox", "sh",
                                      "-c", NC_GET.format(host="web"), ok=False)  # fmt: skip
            assert "hello" not in out.out and "bad address" in out.err
        finally:
            single_user.pybuild("network", "rm", "n1", ok=False)
    finally:
        user.pybuild("rm", "-f", "web", ok=False)
        user.pybuild("network", "rm", "n1", ok=False)
