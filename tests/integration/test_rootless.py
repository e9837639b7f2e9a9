"""Rootless mode: pybuild run by real unprivileged users created for the test.

Set-up needs root (useradd, and a private mount namespace: see
``tests/integration/rootless_users.py``); the CLI itself then runs with ``setpriv`` as
the user, with its store in the user's home (``~/.local/share/pybuild``, the default
root). One user gets a subordinate id range (full mapping through newuidmap), the other
none (single-id mapping).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, write_context
from tests.integration.rootless_users import EPOCH, User, make_user, remove_user

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("useradd", "userdel", "setpriv", "unshare")),
        reason="needs useradd, userdel, setpriv and unshare (util-linux, passwd)",
    ),
]


@pytest.fixture(scope="module")
def base_for_users() -> Iterator[Path]:
    sys.path.insert(0, str(REPO / "fixtures"))
    from make_base import make_base

    out = Path(f"/tmp/pybuild-rootless-base-{uuid.uuid4().hex[:8]}.tar")
    make_base(out, "docker", "busybox:latest")
    out.chmod(0o644)
    yield out
    out.unlink()


def _user(with_range: bool, base: Path) -> Iterator[User]:
    user = make_user(with_range)
    try:
        user.pybuild("load", "-i", base)
        yield user
    finally:
        remove_user(user.name)


@pytest.fixture(scope="module")
def ranged_user(base_for_users: Path) -> Iterator[User]:
    yield from _user(True, base_for_users)


@pytest.fixture(scope="module")
def single_user(base_for_users: Path) -> Iterator[User]:
    yield from _user(False, base_for_users)


def _context(
    user: User, name: str, dockerfile: str, files: dict[str, str | bytes] | None = None
) -> Path:
    return user.give(write_context(user.home / name, files or {}, dockerfile))


def _diff_ids(user: User, image: str) -> list[str]:
    doc = json.loads(user.pybuild("inspect", image).out)[0]
    ids: list[str] = doc["Config"]["rootfs"]["diff_ids"]
    return ids


CHOWN_DOCKERFILE = """\
FROM busybox:latest
RUN echo hi > /greeting && mkdir /d && chown 1000:1000 /d && rm -rf /tmp
CMD ["cat", "/greeting"]
"""


def test_rootless_user_with_subuid_range_builds_runs_and_chowns(ranged_user: User) -> None:
    ctx = _context(ranged_user, "ctx", CHOWN_DOCKERFILE)
    ranged_user.pybuild("build", "--progress", "plain", "-t", "hi:1", ctx)
    assert ranged_user.pybuild("run", "--rm", "hi:1").out == "hi\n"
    owner = ranged_user.pybuild("run", "--rm", "hi:1", "stat", "-c", "%u:%g", "/d").out
    assert owner == "1000:1000\n"
    # On the host the store belongs to the user, and id 1000 is subuid start + 999.
    store = ranged_user.home / ".local/share/pybuild"
    assert store.stat().st_uid == pwd_uid(ranged_user.name)
    assert ranged_user.subuid is not None
    # Every unpacked copy of the layer that made /d: the step's own (real file times) and,
    # under SOURCE_DATE_EPOCH, the image's clamped rewrite of it.
    layer_dirs = [p / "d" for p in (store / "layers").iterdir() if (p / "d").is_dir()]
    assert layer_dirs
    assert {p.stat().st_uid for p in layer_dirs} == {ranged_user.subuid + 999}
    # The container saw itself as root of a user namespace, not host root.
    ids = ranged_user.pybuild("run", "--rm", "hi:1", "cat", "/proc/self/uid_map").out.split()
    assert ids[:3] == ["0", str(pwd_uid(ranged_user.name)), "1"]


def test_rootless_user_without_range_builds_and_runs_as_single_id(single_user: User) -> None:
    ctx = _context(single_user, "ctx", "FROM busybox:latest\nRUN echo hi > /greeting\n")
    single_user.pybuild("build", "--progress", "plain", "-t", "hi:1", ctx)
    assert single_user.pybuild("run", "--rm", "hi:1", "cat", "/greeting").out == "hi\n"
    ids = single_user.pybuild("run", "--rm", "hi:1", "cat", "/proc/self/uid_map").out.split()
    assert ids == ["0", str(pwd_uid(single_user.name)), "1"]


def test_rootless_single_id_chown_to_other_id_fails_clearly(single_user: User) -> None:
    ctx = _context(single_user, "chown", CHOWN_DOCKERFILE)
    result = single_user.pybuild("build", "--progress", "plain", ctx, ok=False)
    assert result.code == 1
    err = " ".join(result.err.split())  # the message is wrapped to the terminal width
    assert "Invalid argument" in err
    assert "single-id mapping" in err
    assert "subordinate id range" in err
    assert "Traceback" not in result.err


def test_rootless_single_id_run_as_other_user_is_refused(single_user: User) -> None:
    ctx = _context(single_user, "plain", "FROM busybox:latest\nRUN true\n")
    single_user.pybuild("build", "--progress", "plain", "-t", "plain:1", ctx)
    result = single_user.pybuild("run", "--rm", "-u", "1000", "plain:1", "id", ok=False)
    assert result.code == 125
    assert "has no id in this rootless sandbox" in " ".join(result.err.split())
    assert "Traceback" not in result.err


SNAPSHOT_DOCKERFILE = """\
FROM busybox:latest
COPY app.txt /app/app.txt
RUN echo new > /new && rm /bin/true && chmod 700 /home && ln -s /new /link \\
    && mkdir -p /etc/sub && echo x > /etc/sub/f && ln /new /hard && rm -rf /var \\
    && mkdir /var && echo y > /var/z && chown 1:1 /var/z
WORKDIR /app/work
RUN echo more >> /app/app.txt && rm -rf /etc/sub
"""


def test_copy_snapshotter_gives_the_same_layers_as_overlay_rootless(ranged_user: User) -> None:
    ctx = _context(ranged_user, "snap", SNAPSHOT_DOCKERFILE, {"app.txt": "app\n"})
    ranged_user.pybuild("build", "--progress", "plain", "-t", "ov:1", ctx)
    ranged_user.pybuild(
        "build", "--progress", "plain", "--no-cache", "-t", "cp:1", ctx,
        env={"PYBUILD_SNAPSHOTTER": "copy"},
    )  # fmt: skip
    overlay, copied = _diff_ids(ranged_user, "ov:1"), _diff_ids(ranged_user, "cp:1")
    assert len(overlay) == 5
    assert overlay == copied
    out = ranged_user.pybuild(
        "run", "--rm", "cp:1", "sh", "-c", "cat /new /var/z /app/app.txt; ls /etc/sub",
        ok=False, env={"PYBUILD_SNAPSHOTTER": "copy"},
    )  # fmt: skip
    assert out.out == "new\ny\napp\nmore\n"
    assert "No such file" in out.err


def test_unknown_snapshotter_is_a_clear_error(ranged_user: User) -> None:
    ctx = _context(ranged_user, "bad", "FROM busybox:latest\nRUN true\n")
    result = ranged_user.pybuild(
        "build", "--progress", "plain", "--no-cache", ctx, ok=False,
        env={"PYBUILD_SNAPSHOTTER": "zfs"},
    )  # fmt: skip
    assert result.code != 0
    assert "PYBUILD_SNAPSHOTTER='zfs'" in " ".join(result.err.split())
    assert "Traceback" not in result.err


def test_copy_snapshotter_gives_the_same_layers_as_overlay_as_root(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "snap", {"app.txt": "app\n"}, SNAPSHOT_DOCKERFILE)
    env = {"SOURCE_DATE_EPOCH": EPOCH}
    pybuild("build", "--progress", "plain", "-t", "ov:1", ctx, env=env)
    env_copy = {**env, "PYBUILD_SNAPSHOTTER": "copy"}
    pybuild("build", "--progress", "plain", "--no-cache", "-t", "cp:1", ctx, env=env_copy)
    overlay = pybuild.inspect("ov:1")["Config"]["rootfs"]["diff_ids"]
    assert len(overlay) == 5
    assert pybuild.inspect("cp:1")["Config"]["rootfs"]["diff_ids"] == overlay


@pytest.fixture(scope="module")
def base_owned_by_1000(
    tmp_path_factory: pytest.TempPathFactory, base_for_users: Path
) -> Iterator[Path]:
    """An image archive (``owned:1``) whose top layer has /data and /data/f owned by
    1000:1000, built by root."""
    tmp = tmp_path_factory.mktemp("owned")
    cli = Pybuild(tmp / "store")
    cli("load", "-i", base_for_users)
    ctx = write_context(
        tmp / "ctx",
        {},
        "FROM busybox:latest\nRUN mkdir /data && echo v > /data/f && chown -R 1000:1000 /data\n",
    )
    cli.build(ctx, "-t", "owned:1")
    out = Path(f"/tmp/pybuild-rootless-owned-{uuid.uuid4().hex[:8]}.tar")
    cli("save", "-o", out, "owned:1")
    out.chmod(0o644)
    yield out
    out.unlink()


def _top_layer_owners(archive: Path) -> dict[str, tuple[int, int]]:
    """name -> (uid, gid) of the entries of the last layer of an uncompressed OCI archive."""
    with tarfile.open(archive) as outer:

        def blob(digest: str) -> bytes:
            member = outer.extractfile("blobs/sha256/" + digest.split(":")[1])
            assert member is not None
            return member.read()

        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        layer = blob(manifest["layers"][-1]["digest"])
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        return {m.name.rstrip("/"): (m.uid, m.gid) for m in inner.getmembers()}


@pytest.mark.parametrize("snapshotter", ["overlay", "copy"])
def test_rootless_single_id_keeps_lower_layer_ids_in_new_layers(
    single_user: User, base_owned_by_1000: Path, snapshotter: str
) -> None:
    single_user.pybuild("load", "-i", base_owned_by_1000)
    ctx = _context(
        single_user,
        f"keep-{snapshotter}",
        "FROM owned:1\nRUN echo w >> /data/f && touch /data/new\n",
    )
    env = {"PYBUILD_SNAPSHOTTER": snapshotter}
    single_user.pybuild("build", "--progress", "plain", "--no-cache", "-t", "kept:1", ctx, env=env)
    archive = single_user.home / f"kept-{snapshotter}.tar"
    single_user.pybuild(
        "save", "--format", "oci", "--compression", "uncompressed", "-o", archive, "kept:1"
    )
    owners = _top_layer_owners(archive)
    # Copied up from the lower layer: the tar's ids again, though on disk they are ours.
    assert owners["data"] == (1000, 1000)
    assert owners["data/f"] == (1000, 1000)
    assert owners["data/new"] == (0, 0)  # made by root in the container
    inside = single_user.pybuild("run", "--rm", "kept:1", "cat", "/data/f").out
    assert inside == "v\nw\n"


def pwd_uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def test_rootless_store_is_private_to_its_user_and_keeps_working(
    ranged_user: User, single_user: User, base_for_users: Path
) -> None:
    # A store of the user's own under a directory every user can search, so only the
    # store's mode keeps the other user out.
    open_dir = Path(f"/tmp/pybuild-rootless-open-{uuid.uuid4().hex[:8]}")
    open_dir.mkdir(mode=0o755)
    try:
        ranged_user.give(open_dir)
        root = open_dir / "store"
        env = {"PYBUILD_ROOT": str(root)}
        ranged_user.pybuild("load", "-i", base_for_users, env=env)
        ctx = _context(ranged_user, "private", CHOWN_DOCKERFILE)
        ranged_user.pybuild("build", "--progress", "plain", "-t", "p:1", ctx, env=env)
        assert ranged_user.pybuild("run", "--rm", "p:1", env=env).out == "hi\n"
        assert root.stat().st_uid == pwd_uid(ranged_user.name)
        assert root.stat().st_mode & 0o777 == 0o700
        assert (root / "index.db").stat().st_mode & 0o777 == 0o600
        other = single_user.name
        setpriv = ["setpriv", f"--reuid={other}", f"--regid={other}", "--clear-groups", "--"]
        probe = subprocess.run(
            [*setpriv, "/bin/sh", "-c", 'ls "$1"/layers', "sh", str(root)],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        assert probe.returncode != 0 and "Permission denied" in probe.stderr
    finally:
        shutil.rmtree(open_dir, ignore_errors=True)


DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


def _dev_state() -> list[tuple[int, int, int, int]]:
    stats = [os.stat(f"/dev/{n}") for n in DEV_NODES]
    return [(st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns) for st in stats]


def test_rootless_container_cannot_change_the_host_dev_nodes(ranged_user: User) -> None:
    tamper = "; ".join(
        f"touch -d 2001-01-01 /dev/{n} || echo refused; chmod 0600 /dev/{n} || echo refused; "
        f"chown 1:1 /dev/{n} || echo refused; touch /dev/{n} || echo refused"
        for n in DEV_NODES
    )
    works = (
        "echo x > /dev/null && head -c 16 /dev/urandom | wc -c && "
        "if echo x 2>/dev/null > /dev/full; then echo full-wrote; else echo full-refused; fi"
    )
    before = _dev_state()
    result = ranged_user.pybuild(
        "run", "--rm", "busybox", "sh", "-c", f"stat -c %u /dev/null; {tamper}; {works}"
    )
    assert _dev_state() == before
    lines = result.out.split()
    # The host's root is not mapped in the user namespace: its nodes are nobody's there.
    assert lines[0] == "65534"
    assert lines[1:-2] == ["refused"] * (4 * len(DEV_NODES))
    assert lines[-2:] == ["16", "full-refused"]


@pytest.mark.requires_qemu
def test_rootless_multi_platform_build_runs_arm64_under_emulation(ranged_user: User) -> None:
    from make_base import make_base  # base_for_users put fixtures/ on sys.path

    archive = make_base(ranged_user.home / "multi.tar", "oci-index", "busybox-multi:1")
    ranged_user.give(archive)
    ranged_user.pybuild("load", "-i", archive)
    ctx = _context(ranged_user, "multi", "FROM busybox-multi:1\nRUN uname -m > /arch\n")
    built = ranged_user.pybuild(
        "build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", "m:1", ctx
    )
    assert "index of 2 platforms" in built.err
    # binfmt's F flag: the interpreter was opened when registered, so it runs in the
    # user's namespaces too.
    arm = ranged_user.pybuild("run", "--rm", "--platform", "linux/arm64", "m:1", "cat", "/arch")
    assert arm.out == "aarch64\n"
