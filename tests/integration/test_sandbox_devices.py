"""The container's /dev nodes are its own: changing them never changes the host's /dev.

Each test records the host nodes' mode, owner and times first and puts them back at the
end, so a failure here never leaves the host with a broken /dev/null.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

NODES = ("null", "zero", "full", "random", "urandom", "tty")
# What a hostile step does to every node it can reach.
TAMPER = "; ".join(
    f"touch -d 2001-01-01 /dev/{n}; chmod 0600 /dev/{n}; chown 65534:65534 /dev/{n}" for n in NODES
)
# The devices still work after that, inside the same container.
WORKS = (
    "echo discarded > /dev/null && "
    "test $(head -c 16 /dev/urandom | wc -c) -eq 16 && "
    "test $(head -c 8 /dev/zero | wc -c) -eq 8 && "
    "if echo x 2>&1 > /dev/full; then echo FULL-WROTE; else echo full-refused; fi"
)


def _host_state() -> dict[str, tuple[int, int, int, int]]:
    states = {}
    for name in NODES:
        st = os.stat(f"/dev/{name}")
        states[name] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return states


@contextlib.contextmanager
def _host_dev_restored() -> Iterator[dict[str, tuple[int, int, int, int]]]:
    """Yield the host nodes' state; put it back afterwards whatever happened."""
    before = _host_state()
    try:
        yield before
    finally:
        for name, (mode, uid, gid, mtime) in before.items():
            path = f"/dev/{name}"
            os.chown(path, uid, gid)
            os.chmod(path, mode & 0o7777)
            os.utime(path, ns=(os.stat(path).st_atime_ns, mtime))


def test_run_step_changing_dev_nodes_leaves_the_host_dev_alone(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    dockerfile = f"FROM busybox\nRUN {TAMPER}; {WORKS} > /works.txt 2>&1\n"
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    out = tmp_path / "rootfs"
    with _host_dev_restored() as before:
        pybuild.build(ctx, "--no-cache", "-o", f"type=local,dest={out}")
        assert _host_state() == before
    works = (out / "works.txt").read_text()
    assert works.endswith("No space left on device\nfull-refused\n"), works
    assert not (out / "dev" / "null").exists()  # the nodes never land in the layer


def test_pybuild_run_changing_dev_nodes_leaves_the_host_dev_alone(pybuild: Pybuild) -> None:
    script = f"{TAMPER}; stat -c '%a %u' /dev/null; {WORKS}"
    with _host_dev_restored() as before:
        result = pybuild("run", "--rm", "busybox", "sh", "-c", script)
        assert _host_state() == before
    # Inside, the container's own node did change, as in docker.
    assert result.out.startswith("600 65534\n"), result.out
    assert result.out.endswith("No space left on device\nfull-refused\n"), result.out


@pytest.mark.parametrize("flags", [(), ("--tmpfs", "/dev")], ids=["own-dev", "dev-hidden"])
def test_masked_proc_files_are_not_the_host_dev_null(
    pybuild: Pybuild, flags: tuple[str, ...]
) -> None:
    masked = "/proc/keys"  # one docker masks that every kernel here has
    if not os.path.exists(masked):
        pytest.skip(f"this kernel has no {masked}")
    script = (
        f"stat -c '%F %t:%T' {masked}; chmod 0600 {masked}; chown 65534 {masked}; "
        f"touch -d 2001-01-01 {masked}; wc -c < {masked}"
    )
    with _host_dev_restored() as before:
        result = pybuild("run", "--rm", *flags, "busybox", "sh", "-c", script, ok=False)
        assert _host_state() == before
    lines = result.out.split("\n")
    assert lines[0] == "character special file 1:3"  # covered with a null device
    assert lines[1].strip() == "0"  # reads as empty
