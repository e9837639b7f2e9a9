"""COPY/ADD execution as current BuildKit runs it (fileop + fsutil copy): owners kept from
a stage, ``ADD --chown`` on archive members, octal ``--chmod`` on created parents, symlinked
destinations, unix sockets in the context, hard links from a stage."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _rootfs(pybuild: Pybuild, ctx: Path, out: Path) -> Path:
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    return out


def _owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_copy_from_stage_keeps_source_owner(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox AS src\n"
        "RUN mkdir /d && echo x > /d/f && ln -s f /d/l && chown -h 100:200 /d /d/f /d/l\n"
        "FROM busybox\n"
        "COPY --from=src /d /kept\n"
        "COPY --from=src /d/f /kept-file\n"
        "COPY --from=src --chown=7:8 /d /chowned\n"
        "COPY ctx.txt /ctx.txt\n"
    )
    ctx = write_context(tmp_path / "ctx", {"ctx.txt": "c"}, dockerfile)
    os.chown(ctx / "ctx.txt", 1234, 4321)  # the client resets context owners to 0:0
    out = _rootfs(pybuild, ctx, tmp_path / "out")
    assert _owner(out / "kept" / "f") == (100, 200)
    assert _owner(out / "kept" / "l") == (100, 200)
    assert _owner(out / "kept-file") == (100, 200)
    # The destination of a directory copy is made like a parent: 0:0 without --chown.
    assert _owner(out / "kept") == (0, 0)
    assert _owner(out / "chowned" / "f") == (7, 8)
    assert _owner(out / "ctx.txt") == (0, 0)


def _tar(members: list[tuple[str, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.mtime = 7, 7, 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_add_chown_applies_to_archive_members(pybuild: Pybuild, tmp_path: Path) -> None:
    archive = _tar([("top/", None), ("top/a.txt", b"a"), ("implied/b.txt", b"b")])
    dockerfile = "FROM busybox\nADD --chown=100:200 x.tar /out/\nADD x.tar /plain/\n"
    ctx = write_context(tmp_path / "ctx", {"x.tar": archive}, dockerfile)
    out = _rootfs(pybuild, ctx, tmp_path / "out")
    assert _owner(out / "out") == (100, 200)
    assert _owner(out / "out" / "top") == (100, 200)
    assert _owner(out / "out" / "top" / "a.txt") == (100, 200)
    assert _owner(out / "out" / "implied" / "b.txt") == (100, 200)
    # A directory the archive only implies is made 0:0 0755 (go-archive).
    assert _owner(out / "out" / "implied") == (0, 0)
    assert _mode(out / "out" / "top" / "a.txt") == 0o640  # modes stay the archive's
    assert _owner(out / "plain" / "top" / "a.txt") == (7, 7)


def test_copy_octal_chmod_applies_to_created_parents(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN mkdir -m 700 /existing\n"
        "COPY --chmod=770 f /a/b/f\n"
        "COPY --chmod=4755 f /s/f\n"
        "COPY --chmod=640 d /newdir\n"
        "COPY --chmod=770 f /existing/c/f\n"
        "COPY --chmod=u+x f /sym/f\n"
    )
    ctx = write_context(tmp_path / "ctx", {"f": "f", "d/g": "g"}, dockerfile)
    out = _rootfs(pybuild, ctx, tmp_path / "out")
    assert _mode(out / "a") == 0o770
    assert _mode(out / "a" / "b") == 0o770
    assert _mode(out / "a" / "b" / "f") == 0o770
    assert _mode(out / "s") == 0o755  # only the permission bits reach directories
    assert _mode(out / "s" / "f") == 0o4755
    assert _mode(out / "newdir") == 0o640  # a directory source's new destination too
    assert _mode(out / "existing") == 0o700  # existing directories keep their mode
    assert _mode(out / "existing" / "c") == 0o770
    assert _mode(out / "sym") == 0o755  # a symbolic --chmod leaves new parents 0755


def test_copy_through_dangling_symlink_creates_target_in_root(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN ln -s /opt/app /app && ln -s /../../../../outside /climb "
        "&& ln -s /data/file.txt /file-link\n"
        "COPY f /app/f\n"
        "COPY f /climb/f\n"
        "COPY f /file-link\n"
        "ADD x.tar /app/unpacked/\n"
        "COPY d /app/tree\n"
    )
    archive = _tar([("a.txt", b"a")])
    ctx = write_context(tmp_path / "ctx", {"f": "f", "x.tar": archive, "d/g": "g"}, dockerfile)
    out = _rootfs(pybuild, ctx, tmp_path / "out")
    assert os.readlink(out / "app") == "/opt/app"
    assert (out / "opt" / "app" / "f").read_text() == "f"
    assert (out / "outside" / "f").read_text() == "f"
    # A file destination that is a link is written through: the link stays.
    assert os.readlink(out / "file-link") == "/data/file.txt"
    assert (out / "data" / "file.txt").read_text() == "f"
    assert (out / "opt" / "app" / "unpacked" / "a.txt").read_text() == "a"
    assert (out / "opt" / "app" / "tree" / "g").read_text() == "g"


def test_copy_unix_socket_in_context_becomes_empty_file(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"d/keep.txt": "k"}, "FROM busybox\nCOPY d /d\nCOPY d/app.sock /one\n"
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    here = Path.cwd()
    try:
        os.chdir(ctx / "d")  # a relative name: AF_UNIX paths are short
        sock.bind("app.sock")
    finally:
        os.chdir(here)
        sock.close()  # the socket file stays
    os.chmod(ctx / "d" / "app.sock", 0o751)
    out = _rootfs(pybuild, ctx, tmp_path / "out")
    for copied in (out / "d" / "app.sock", out / "one"):
        st = os.lstat(copied)
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0
        assert stat.S_IMODE(st.st_mode) == 0o751
    assert (out / "d" / "keep.txt").read_text() == "k"


def test_copy_from_stage_keeps_hard_links(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox AS src\n"
        "RUN mkdir -p /out/sub && echo data > /out/a && ln /out/a /out/sub/b\n"
        "FROM busybox\n"
        "COPY --from=src /out /copied\n"
        'RUN [ "$(stat -c %h /copied/a)" = 2 ] '
        '&& [ "$(stat -c %i /copied/a)" = "$(stat -c %i /copied/sub/b)" ]\n'
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    pybuild.build(ctx, "-t", "links:1")
    archive = tmp_path / "img.tar"
    pybuild("save", "--format", "docker", "--compression", "uncompressed", "-o", archive, "links:1")
    with tarfile.open(archive) as outer:
        manifest = outer.extractfile("manifest.json")
        assert manifest is not None
        kinds = set()
        for name in json.load(manifest)[0]["Layers"]:
            layer = outer.extractfile(name)
            assert layer is not None
            with tarfile.open(fileobj=layer) as inner:
                found = {m.name.lstrip("./"): m for m in inner.getmembers()}
            pair = [found.get("copied/a"), found.get("copied/sub/b")]
            if all(pair):
                kinds = {m.type for m in pair if m is not None}
    assert kinds == {tarfile.REGTYPE, tarfile.LNKTYPE}


def test_copy_keeps_hard_links_between_context_files(pybuild: Pybuild, tmp_path: Path) -> None:
    # BuildKit's context transfer (fsutil send/diskwriter) keeps hard links, and the
    # copy from the transferred context keeps them too.
    dockerfile = (
        "FROM busybox\n"
        "COPY d /d\n"
        'RUN [ "$(stat -c %h /d/a)" = 2 ] && [ "$(stat -c %i /d/a)" = "$(stat -c %i /d/s/b)" ]'
        ' && [ "$(stat -c %h /d/solo)" = 1 ]\n'
    )
    ctx = write_context(tmp_path / "ctx", {"d/a": "a", "d/solo": "s", "d/s/.keep": ""}, dockerfile)
    os.link(ctx / "d" / "a", ctx / "d" / "s" / "b")
    pybuild.build(ctx)
