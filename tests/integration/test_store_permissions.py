"""The store is private to its owner: another local user reaches nothing under it.

Unpacked layers are real host files (setuid-root programs, device nodes from images) and
``index.db`` holds build-arg values. The probes run as a real unprivileged user made for
the test (``useradd``, then ``setpriv`` as in test_rootless.py), against a store whose
parent directory that user can search, so only the store's own modes stand in the way.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, Result, write_context

sys.path.insert(0, str(REPO / "fixtures"))

from make_base import BUSYBOX, docker_archive, rootfs_entries, tar_bytes

TOOLS = ("useradd", "userdel", "setpriv", "flock")
needs_users = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason="needs useradd, userdel, setpriv (util-linux) and flock",
)
ARG_VALUE = "s3cr3t-build-arg-value"
ID_BINARY = Path(shutil.which("id") or "/usr/bin/id")


@pytest.fixture
def other_user() -> Iterator[str]:
    """A real unprivileged user with no home and no groups, removed afterwards."""
    name = f"pbpm{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-r", "-M", "-s", "/bin/sh", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False, capture_output=True)
        subprocess.run(["userdel", "-f", name], check=False, capture_output=True)


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A directory every user can search (tmp_path's parents are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="pybuild-perm-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _as(user: str, *command: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as ``user``, started by a shell that setpriv runs as the user.

    setpriv's own execve resolved a path through a 0700 root directory in our runs (it
    may still hold privileges during that call); what its shell starts is exactly a
    logged-in user's process, with no capabilities."""
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
    return subprocess.run(
        [*setpriv, "/bin/sh", "-c", 'exec "$@"', "sh", *map(str, command)],
        capture_output=True,
        text=True,
        errors="replace",  # cat of a database that should have been refused
        timeout=60,
        check=False,
        cwd="/",
    )


def _probe_image(dest: Path) -> Path:
    """busybox plus a setuid-root program and a 0666 char device, as an image may hold."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes(rootfs_entries(BUSYBOX)))) as base:
            for member in base.getmembers():
                tar.addfile(member, base.extractfile(member) if member.isfile() else None)
        program = ID_BINARY.read_bytes()
        info = tarfile.TarInfo("usr/local/bin/x")
        info.mode, info.size = 0o4755, len(program)
        tar.addfile(info, io.BytesIO(program))
        dev = tarfile.TarInfo("srv/probe")  # /dev may be covered in the sandbox; /srv is not
        dev.type, dev.mode, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 0o666, 1, 3
        tar.addfile(dev)
    dest.write_bytes(docker_archive(buf.getvalue(), "probe:1"))
    return dest


def _layer_holding(root: Path, rel: str) -> Path:
    found = [p / rel for p in (root / "layers").iterdir() if os.path.lexists(p / rel)]
    assert len(found) == 1, found
    return found[0]


def _denied(done: subprocess.CompletedProcess[str]) -> bool:
    return done.returncode != 0 and "Permission denied" in done.stderr


@pytest.mark.requires_root
@pytest.mark.requires_overlay
@needs_users
def test_store_root_is_private_to_its_owner(
    open_parent: Path, other_user: str, tmp_path: Path
) -> None:
    root = open_parent / "store"  # made by pybuild itself
    cli = Pybuild(root)
    cli("load", "-i", _probe_image(tmp_path / "probe.tar"))
    ctx = write_context(tmp_path / "ctx", {}, 'FROM probe:1\nARG TOKEN\nRUN test -n "$TOKEN"\n')
    cli.build(ctx, "--build-arg", f"TOKEN={ARG_VALUE}", "-t", "probed:1")

    # What the store holds really is dangerous, so the probes below can fail.
    program = _layer_holding(root, "usr/local/bin/x")
    st = program.stat()
    assert st.st_uid == 0 and st.st_mode & stat.S_ISUID
    device = _layer_holding(root, "srv/probe")
    st = device.lstat()
    assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
    assert ARG_VALUE.encode() in (root / "index.db").read_bytes() + _wal(root)
    assert _as(other_user, "ls", open_parent).returncode == 0  # the parent is open

    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert _denied(_as(other_user, "cat", root / "index.db"))
    ran = _as(other_user, program, "-u")
    assert ran.returncode != 0 and ran.stdout == ""  # never ran, so never printed uid 0
    assert _denied(_as(other_user, "sh", "-c", f"echo x > {device}"))
    assert _denied(_as(other_user, "flock", "-n", root / "locks" / "gc", "true"))
    assert _denied(_as(other_user, "ls", root / "layers"))


def _wal(root: Path) -> bytes:
    wal = root / "index.db-wal"
    return wal.read_bytes() if wal.exists() else b""


def _run(root: Path, *args: str | Path, umask: int = 0o022) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "builder.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYBUILD_ROOT": str(root)},
        cwd=REPO,
        timeout=300,
        umask=umask,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_made_under_umask_000_is_private(tmp_path: Path, base_archive: Path) -> None:
    root = tmp_path / "new" / "store"
    done = _run(root, "load", "-i", base_archive, umask=0)
    assert done.code == 0, done.err
    assert _mode(root) == 0o700
    assert _mode(root.parent) == 0o755  # a parent pybuild made is never world-writable
    for name in ("index.db", "locks/gc", "locks/index.db"):
        assert _mode(root / name) == 0o600, name


def test_existing_store_open_to_others_is_made_private_with_a_warning(
    pybuild: Pybuild, store_root: Path
) -> None:
    store_root.chmod(0o755)  # as pybuild left every store before
    done = _run(store_root, "images")
    assert done.code == 0, done.err
    assert f"warning: the store {store_root} was mode 0755" in done.err
    assert "now 0700" in done.err
    assert _mode(store_root) == 0o700
    assert "busybox" in done.out
    assert "warning" not in _run(store_root, "images").err  # once fixed, nothing to say


def test_new_empty_directory_becomes_a_private_store_silently(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    root.chmod(0o777)
    done = _run(root, "images")
    assert done.code == 0 and "warning" not in done.err, done.err
    assert _mode(root) == 0o700


def test_wide_directory_that_is_not_a_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    root.mkdir()
    (root / "report.txt").write_text("mine\n")
    root.chmod(0o755)
    done = _run(root, "images")
    assert done.code != 0
    assert "Traceback" not in done.err
    assert f"error: the store root {root} is mode 0755" in done.err
    assert "not a pybuild store" in done.err and "hint:" in done.err
    assert _mode(root) == 0o755
    assert sorted(p.name for p in root.iterdir()) == ["report.txt"]


@pytest.mark.requires_root
@needs_users
def test_store_root_owned_by_another_user_is_refused(tmp_path: Path, other_user: str) -> None:
    root = tmp_path / "theirs"
    root.mkdir(mode=0o700)
    shutil.chown(root, other_user, other_user)
    done = _run(root, "images")
    assert done.code != 0 and "Traceback" not in done.err
    assert f"error: the store root {root} belongs to uid {root.stat().st_uid}" in done.err
    assert list(root.iterdir()) == []  # nothing written into it
