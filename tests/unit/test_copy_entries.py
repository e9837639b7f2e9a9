"""copy_sources on odd entries, without root: sockets, fifos, hard links, owners kept."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from builder.ops.copyfiles import CopyOptions, SourceItem, copy_sources, walk_tree


def _source(top: Path) -> SourceItem:
    return SourceItem(name=top.name, path=top, entries=tuple(walk_tree(top)))


def _bind(path: Path) -> None:
    here = Path.cwd()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chdir(path.parent)  # a relative name: AF_UNIX paths are short
        sock.bind(path.name)
    finally:
        os.chdir(here)
        sock.close()


def _root(tmp_path: Path) -> Path:
    """A rootfs whose destinations exist: a copy makes new dirs 0:0, which needs root."""
    root = tmp_path / "root"
    for name in ("out", "pair"):
        (root / name).mkdir(parents=True)
    return root


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("data")
    os.link(src / "a", src / "sub" / "b")
    (src / "solo").write_text("solo")
    os.mkfifo(src / "pipe", 0o640)
    _bind(src / "app.sock")
    os.chmod(src / "app.sock", 0o751)
    return src


def test_socket_becomes_an_empty_file_with_its_mode(tmp_path: Path) -> None:
    root = _root(tmp_path)
    copy_sources(
        root, [_source(_tree(tmp_path))], "/out", force_dir=False, opts=CopyOptions(owner=None)
    )
    st = os.lstat(root / "out" / "app.sock")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert stat.S_IMODE(st.st_mode) == 0o751
    assert stat.S_ISFIFO(os.lstat(root / "out" / "pipe").st_mode)


def test_hard_links_within_a_source_stay_linked(tmp_path: Path) -> None:
    root = _root(tmp_path)
    copy_sources(
        root, [_source(_tree(tmp_path))], "/out", force_dir=False, opts=CopyOptions(owner=None)
    )
    a, b = os.lstat(root / "out" / "a"), os.lstat(root / "out" / "sub" / "b")
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    assert os.lstat(root / "out" / "solo").st_nlink == 1


def test_each_source_is_its_own_copy_for_hard_links(tmp_path: Path) -> None:
    # fsutil keeps its inode map per Copy call, and BuildKit copies each source alone.
    src = _tree(tmp_path)
    root = _root(tmp_path)
    items = [_source(src / "a"), _source(src / "sub" / "b")]
    for item in items:
        copy_sources(root, [item], "/pair/", force_dir=False, opts=CopyOptions(owner=None))
    assert os.lstat(root / "pair" / "a").st_ino != os.lstat(root / "pair" / "b").st_ino


def test_owner_none_keeps_each_entrys_owner(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    root = _root(tmp_path)
    copy_sources(root, [_source(src)], "/out", force_dir=False, opts=CopyOptions(owner=None))
    st = os.lstat(root / "out" / "solo")
    assert (st.st_uid, st.st_gid) == (os.lstat(src / "solo").st_uid, os.lstat(src / "solo").st_gid)
