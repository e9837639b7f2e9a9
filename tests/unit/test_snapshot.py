"""The copy snapshotter: merged copies of overlay-form lowers, diffed into an upper dir."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from runtime import snapshot, snapshotter
from runtime.spec import Rootfs


def _rootfs(tmp_path: Path) -> Rootfs:
    lower = tmp_path / "lower"
    (lower / "etc" / "sub").mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root\n")
    (lower / "etc" / "sub" / "f").write_text("f\n")
    (lower / "bin").mkdir()
    (lower / "bin" / "busybox").write_text("bb")
    os.link(lower / "bin" / "busybox", lower / "bin" / "true")
    os.link(lower / "bin" / "busybox", lower / "bin" / "ls")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    return Rootfs((lower,), upper, work)


def _upper(rootfs: Rootfs) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(rootfs.upper):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(rootfs.upper))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out[rel] = "whiteout"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "opaque dir" if snapshotter.is_opaque(str(path)) else "dir"
            else:
                out[rel] = "file"
    return out


def test_unchanged_copy_leaves_the_upper_empty(tmp_path: Path) -> None:
    rootfs = _rootfs(tmp_path)
    copy = snapshot.prepare(rootfs)
    assert (copy.merged / "etc" / "passwd").read_text() == "root\n"
    snapshot.finish(rootfs, copy)
    assert _upper(rootfs) == {}
    assert not copy.merged.exists()


def test_changes_become_overlay_upper_entries(tmp_path: Path) -> None:
    rootfs = _rootfs(tmp_path)
    copy = snapshot.prepare(rootfs)
    merged = copy.merged
    (merged / "etc" / "passwd").write_text("root\nme\n")  # modified: copied with its parent
    (merged / "new").write_text("n")  # new
    os.unlink(merged / "bin" / "true")  # deleted: a whiteout; its other links unchanged
    for name in os.listdir(merged / "etc" / "sub"):
        os.unlink(merged / "etc" / "sub" / name)
    os.rmdir(merged / "etc" / "sub")
    (merged / "etc" / "sub").mkdir()  # replaced dir: opaque
    (merged / "etc" / "sub" / "g").write_text("g")
    snapshot.finish(rootfs, copy)
    assert _upper(rootfs) == {
        "bin": "dir",
        "bin/true": "whiteout",
        "etc": "dir",
        "etc/passwd": "file",
        "etc/sub": "opaque dir",
        "etc/sub/g": "file",
        "new": "file",
    }


def test_lower_whiteouts_and_opaque_dirs_apply_to_the_copy(tmp_path: Path) -> None:
    rootfs = _rootfs(tmp_path)
    top = tmp_path / "top"
    (top / "etc" / "sub").mkdir(parents=True)
    os.mknod(top / "etc" / "passwd", stat.S_IFCHR, os.makedev(0, 0))
    os.setxattr(top / "etc" / "sub", "user.overlay.opaque", b"y")
    (top / "etc" / "sub" / "only").write_text("o")
    rootfs = Rootfs((top, *rootfs.lowers), rootfs.upper, rootfs.work)
    copy = snapshot.prepare(rootfs)
    try:
        assert not (copy.merged / "etc" / "passwd").exists()
        assert sorted(os.listdir(copy.merged / "etc" / "sub")) == ["only"]
    finally:
        snapshot.discard(copy)


def test_what_the_seed_writes_is_no_change_and_private_paths_never_reach_the_upper(
    tmp_path: Path,
) -> None:
    rootfs = _rootfs(tmp_path)

    def seed(merged: Path) -> None:  # what chroot isolation puts in place of its mounts
        (merged / "dev").mkdir()
        (merged / "dev" / "node").write_text("")
        (merged / "etc" / "hosts").write_text("127.0.0.1 localhost\n")

    copy = snapshot.prepare(rootfs, seed=seed, private=frozenset({"dev", "etc/hosts"}))
    merged = copy.merged
    (merged / "dev" / "new").write_text("written by the step")
    (merged / "dev" / "node").unlink()
    (merged / "etc" / "hosts").write_text("changed\n")
    (merged / "etc" / "passwd").unlink()
    snapshot.finish(rootfs, copy)
    assert _upper(rootfs) == {"etc": "dir", "etc/passwd": "whiteout"}


def test_a_seed_alone_leaves_the_upper_empty(tmp_path: Path) -> None:
    rootfs = _rootfs(tmp_path)
    copy = snapshot.prepare(rootfs, seed=lambda merged: (merged / "dev").mkdir())
    assert (copy.merged / "dev").is_dir()
    snapshot.finish(rootfs, copy)
    assert _upper(rootfs) == {}
