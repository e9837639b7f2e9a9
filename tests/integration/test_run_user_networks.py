"""User-defined networks: containers on one reach each other by name and alias, other
networks cannot reach them, and a network in use is not removed."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runtime.netbridge import Holder, alive, host_routes
from tests.integration.clihelp import Pybuild
from tests.integration.nethelp import NC_GET

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(shutil.which("pasta") is None, reason="needs pasta (Debian passt)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs ip (iproute2)"),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="needs nsenter (util-linux)"),
]


def serve(pybuild: Pybuild, tmp_path: Path, *flags: str) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from web\n")
    httpd = ("busybox", "httpd", "-f", "-p", "8000", "-h", "/www")
    pybuild("run", "-d", "--name", "web", "--network", "n1", "--network-alias", "www",
            *flags, "-v", f"{www}:/www", *httpd)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # httpd listening
        if "hello" in pybuild("run", "--rm", "--network", "n1", "busybox", "sh", "-c",
                              NC_GET.format(host="web"), ok=False).out:  # fmt: skip
            return
        time.sleep(0.2)
    raise AssertionError("web never answered")


def holder_of(pybuild: Pybuild, name: str) -> Holder:
    body = json.loads((pybuild.root / "networks" / f"{name}.json").read_text())
    return Holder(body["holder_pid"], body["holder_start"])


def test_containers_on_one_network_reach_each_other_by_name_and_alias(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    pybuild("network", "create", "n1")
    try:
        serve(pybuild, tmp_path, "-p", "127.0.0.1::8000")
        for host in ("web", "www"):
            out = pybuild("run", "--rm", "--network", "n1", "--name", "client", "busybox",
                          "sh", "-c", NC_GET.format(host=host)).out  # fmt: skip
            assert "hello from web" in out
        # -p works on a user network too
        port = pybuild("port", "web", "8000").out.strip().rsplit(":", 1)[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert page.read() == b"hello from web\n"
        # ps and inspect show the network and the address; network inspect the members
        doc = json.loads(pybuild("network", "inspect", "n1").out)[0]
        (member,) = doc["Containers"].values()
        assert member["Name"] == "web" and member["Aliases"] == ["www"]
        address = member["IPv4Address"].split("/")[0]
        assert address.startswith(doc["Subnet"].rsplit(".", 1)[0] + ".")
        assert f"n1 ({address})" in pybuild("ps").out
        settings = json.loads(pybuild("inspect", "web").out)[0]["NetworkSettings"]
        assert settings["Networks"]["n1"]["IPAddress"] == address
        # and the container still reaches out (pasta): its default route is eth0's
        routes = pybuild("run", "--rm", "--network", "n1", "busybox", "ip", "route").out
        assert "default via" in routes and "eth0" in routes.split("default via")[1].split("\n")[0]
    finally:
        pybuild("rm", "-f", "web", ok=False)
        pybuild("network", "rm", "n1", ok=False)


def test_another_network_cannot_reach_a_container_by_name_or_address(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    pybuild("network", "create", "n1")
    pybuild("network", "create", "n2")
    try:
        serve(pybuild, tmp_path)
        doc = json.loads(pybuild("network", "inspect", "n1").out)[0]
        address = next(iter(doc["Containers"].values()))["IPv4Address"].split("/")[0]
        get = NC_GET.format
        script = f"grep -w web /etc/hosts; {get(host='web')}; {get(host=address)}"
        started = time.monotonic()
        out = pybuild("run", "--rm", "--network", "n2", "busybox", "sh", "-c", script, ok=False)
        assert "hello" not in out.out and "web" not in out.out
        assert "bad address" in out.err  # the name does not resolve
        assert "No route to host" in out.err  # the address fails at once, no time-out
        assert time.monotonic() - started < 5
    finally:
        pybuild("rm", "-f", "web", ok=False)
        pybuild("network", "rm", "n1", "n2", ok=False)


def test_network_in_use_is_not_removed_and_rm_leaves_nothing(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    pybuild("network", "create", "n1")
    holder = holder_of(pybuild, "n1")
    assert alive(holder)
    serve(pybuild, tmp_path)
    refused = pybuild("network", "rm", "n1", ok=False)
    assert refused.code != 0 and "Traceback" not in refused.err
    assert "network 'n1' has running containers: web" in refused.err
    assert "pybuild rm -f web" in refused.err
    pybuild("rm", "-f", "web")
    pybuild("network", "rm", "n1")
    assert not alive(holder)  # gone (or a zombie for init to reap): no namespace left
    assert not (pybuild.root / "networks" / "n1.json").exists()
    assert "n1" not in pybuild("network", "ls").out
    assert not any(str(net).startswith("10.89.") for net in host_routes())


def test_network_names_and_subnets_are_checked(pybuild: Pybuild) -> None:
    for name in ("host", "default", "none"):
        done = pybuild("network", "create", name, ok=False)
        assert done.code == 2 and "is reserved" in done.err
    for name in ("_x", "a b", "x" * 64):
        assert "invalid network name" in pybuild("network", "create", name, ok=False).err
    pybuild("network", "create", "--subnet", "10.99.0.0/24", "n1")
    try:
        clash = pybuild("network", "create", "--subnet", "10.99.0.0/16", "n2", ok=False)
        assert clash.code == 2 and "overlaps network 'n1'" in clash.err
        again = pybuild("network", "create", "n1", ok=False)
        assert "already exists" in again.err
        unknown = pybuild("run", "--rm", "--network", "nope", "busybox", "true", ok=False)
        assert "network 'nope' does not exist" in unknown.err
    finally:
        pybuild("network", "rm", "n1")


def test_containers_started_at_once_get_different_addresses(pybuild: Pybuild) -> None:
    pybuild("network", "create", "n1")
    names = [f"c{i}" for i in range(3)]
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda name: pybuild("run", "-d", "--name", name, "--network",
                                               "n1", "busybox", "sleep", "60"), names))  # fmt: skip
        doc = json.loads(pybuild("network", "inspect", "n1").out)[0]
        addresses = [c["IPv4Address"] for c in doc["Containers"].values()]
        assert len(addresses) == 3 and len(set(addresses)) == 3
        hosts = pybuild("run", "--rm", "--network", "n1", "busybox", "cat", "/etc/hosts").out
        assert all(f"\t{name}" in hosts for name in names)
    finally:
        pybuild("rm", "-f", *names, ok=False)
        pybuild("network", "rm", "n1", ok=False)


def logs_until(pybuild: Pybuild, name: str, text: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pybuild("logs", name).out
        if out.endswith(text):
            return out
        time.sleep(0.2)
    raise AssertionError(f"the logs of {name} never ended with {text!r}")


def test_a_running_container_learns_of_later_members_and_forgets_leavers(
    pybuild: Pybuild,
) -> None:
    pybuild("network", "create", "n1")
    script = "while true; do grep -qw second /etc/hosts && echo has || echo not; sleep 0.2; done"
    try:
        pybuild("run", "-d", "--name", "first", "--network", "n1", "busybox", "sh", "-c", script)
        logs_until(pybuild, "first", "not\n")
        pybuild("run", "-d", "--name", "second", "--network", "n1", "busybox", "sleep", "60")
        logs_until(pybuild, "first", "has\n")
        pybuild("rm", "-f", "second")
        logs_until(pybuild, "first", "not\n")
    finally:
        pybuild("rm", "-f", "first", "second", ok=False)
        pybuild("network", "rm", "n1", ok=False)
