"""``-o type=tar`` (the root filesystem as a tar) and ``-o -`` / ``dest=-`` (stdout)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

DOCKERFILE = """\
FROM busybox
COPY hello.txt /srv/hello.txt
RUN rm /bin/ls && ln -s /srv/hello.txt /link && chmod 0640 /srv/hello.txt
"""


def _context(tmp_path: Path) -> Path:
    return write_context(tmp_path / "ctx", {"hello.txt": "hello\n"}, DOCKERFILE)


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def _stdout_bytes(pybuild: Pybuild, *args: str | Path) -> tuple[bytes, str]:
    env = {**os.environ, "PYBUILD_ROOT": str(pybuild.root)}
    done = subprocess.run(
        [sys.executable, "-m", "builder.cli", *map(str, args)],
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout, done.stderr.decode()


def _assert_rootfs(members: dict[str, tarfile.TarInfo], data: bytes) -> None:
    assert "oci-layout" not in members and "index.json" not in members  # not an OCI layout
    assert members["bin/busybox"].isreg() or members["bin/busybox"].islnk()  # busybox links
    assert "bin/ls" not in members  # the whiteout was applied
    assert members["link"].issym() and members["link"].linkname == "/srv/hello.txt"
    assert members["srv/hello.txt"].mode & 0o777 == 0o640
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        hello = tar.extractfile("srv/hello.txt")
        assert hello is not None and hello.read() == b"hello\n"


def test_type_tar_writes_the_root_filesystem_as_a_tar(pybuild: Pybuild, tmp_path: Path) -> None:
    out = tmp_path / "rootfs.tar"
    pybuild.build(_context(tmp_path), "-o", f"type=tar,dest={out}")
    data = out.read_bytes()
    _assert_rootfs(_members(data), data)
    listed = subprocess.run(["tar", "-tf", str(out)], capture_output=True, text=True, check=True)
    assert "bin/busybox" in listed.stdout.split()  # GNU tar reads it too


def test_dash_output_streams_the_rootfs_tar_to_stdout(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    data, err = _stdout_bytes(pybuild, "build", "--progress", "plain", "-o", "-", ctx)
    _assert_rootfs(_members(data), data)
    assert "image sha256:" in err  # the summary goes to stderr, not into the tar
    assert not (REPO / "-").exists() and not Path("-").exists()


def test_dest_dash_streams_an_oci_archive_to_stdout(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    data, _ = _stdout_bytes(pybuild, "build", "--progress", "plain", "-o", "type=oci,dest=-", ctx)
    assert {"oci-layout", "index.json"} <= set(_members(data))


def test_local_output_to_stdout_and_q_with_stdout_are_refused(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = _context(tmp_path)
    local = pybuild.build(ctx, "-o", "type=local,dest=-", ok=False)
    assert local.code == 2 and "type=tar,dest=-" in local.err
    quiet = pybuild.build(ctx, "-q", "-o", "-", ok=False)
    assert quiet.code == 2 and "--iidfile" in quiet.err
