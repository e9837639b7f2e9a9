"""Where copied entries land: a dir the copy makes and one full of entries in the way end
up the same, and each file gets its source's content, mode, owner and times."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from builder.ops.copyfiles import CopyOptions, SourceItem, copy_sources, walk_tree
from builder.plan.chmod import parse_chmod

MTIME_NS = 1_700_000_000_123_456_789
BIG = 3 * (1 << 20) + 17  # more than one read and one copy_file_range chunk

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to 0:0)")


def _source(top: Path) -> SourceItem:
    return SourceItem(name=top.name, path=top, entries=tuple(walk_tree(top)))


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    files = {
        "f": (b"file\n", 0o640),
        "x": (b"#!/bin/sh\n", 0o755),
        "ro": (b"read only", 0o444),
        "none": (b"no bits", 0o000),
        "d/g": (b"g", 0o600),
        "d/e/h": (b"h", 0o664),
        "big": (bytes(range(256)) * (BIG // 256) + b"tail", 0o644),
    }
    for rel, (data, mode) in files.items():
        (src / rel).write_bytes(data)
        os.chmod(src / rel, mode)
    os.symlink("f", src / "l")
    os.chmod(src / "d", 0o750)
    for path in [*sorted(src.rglob("*"), reverse=True), src]:
        os.utime(path, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    return src


def _snapshot(top: Path) -> dict[str, tuple[int, int, int, int, bytes]]:
    """rel -> (mode with type, uid, gid, mtime_ns, content or link target)."""
    out = {}
    for rel, path in walk_tree(top):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            body = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            body = os.fsencode(os.readlink(path))
        else:
            body = b""
        mtime = st.st_mtime_ns if rel else 0  # the dest dir itself is the copy's own
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, mtime, body)
    return out


def _in_the_way(dest: Path) -> None:
    """Entries where the copy puts others: a dir for a file, a file for a dir, links."""
    (dest / "f" / "deep").mkdir(parents=True)
    (dest / "f" / "deep" / "old").write_text("old")
    (dest / "d").write_text("a file where a dir goes")
    os.symlink("/elsewhere", dest / "x")
    (dest / "l").mkdir()
    (dest / "big").write_text("short old content")
    (dest / "kept").write_text("not in the source")


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_a_copy_into_a_new_dir_equals_one_over_entries_in_the_way(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    fresh, busy = tmp_path / "fresh", tmp_path / "busy"
    (fresh / "out").mkdir(parents=True)
    (busy / "out").mkdir(parents=True)
    _in_the_way(busy / "out")
    opts = CopyOptions(owner=None)
    copy_sources(fresh, [_source(src)], "/out/new", force_dir=False, opts=opts)
    copy_sources(busy, [_source(src)], "/out", force_dir=False, opts=opts)
    got = _snapshot(fresh / "out" / "new")
    assert got == {k: v for k, v in _snapshot(busy / "out").items() if k != "kept"}
    assert got == _snapshot(src) | {"": got[""]}


def test_file_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    root = tmp_path / "root"
    (root / "out").mkdir(parents=True)
    with _umask(0o077):
        copy_sources(root, [_source(src)], "/out/", force_dir=False, opts=CopyOptions(owner=None))
    for rel in ("f", "x", "ro", "none", "d/e/h", "big"):
        assert stat.S_IMODE(os.lstat(root / "out" / rel).st_mode) == stat.S_IMODE(
            os.lstat(src / rel).st_mode
        ), rel


@needs_root
def test_special_bits_survive_a_chown(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "suid").write_text("s")
    os.chmod(src / "suid", 0o6755)
    root = tmp_path / "root"
    root.mkdir()
    copy_sources(root, [_source(src)], "/out", force_dir=False, opts=CopyOptions(owner=(7, 8)))
    st = os.lstat(root / "out" / "suid")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (7, 8, 0o6755)


@needs_root
def test_chmod_and_chown_apply_to_every_file_of_a_new_dir(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    opts = CopyOptions(owner=(0, 0), chmod=parse_chmod("u+s,g-r"))
    copy_sources(root, [_source(src)], "/out", force_dir=False, opts=opts)
    for rel in ("f", "x", "d/g", "big"):
        st, before = os.lstat(root / "out" / rel), stat.S_IMODE(os.lstat(src / rel).st_mode)
        want = opts.chmod.apply(before, is_dir=False) if opts.chmod else before
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, want), rel
