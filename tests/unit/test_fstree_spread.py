"""fstree.spread: the store's tmp dir asks ext4 to spread each step's dir over the disk."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from cache.store import BlobStore
from fstree import spread
from fstree.spread import FS_TOPDIR_FL, dir_flags, spread_children


def _spreadable(path: Path) -> bool:
    probe = path / "probe"
    probe.mkdir()
    return spread_children(probe)


def test_store_tmp_dir_spreads_its_children(tmp_path: Path) -> None:
    if not _spreadable(tmp_path):
        pytest.skip(f"the filesystem of {tmp_path} has no FS_TOPDIR_FL (ext4 has)")
    store = BlobStore(tmp_path / "store")
    flags = dir_flags(store.tmp_dir)
    assert flags is not None and flags & FS_TOPDIR_FL


def test_spread_children_keeps_the_other_flags_and_is_idempotent(tmp_path: Path) -> None:
    if not _spreadable(tmp_path):
        pytest.skip(f"the filesystem of {tmp_path} has no FS_TOPDIR_FL (ext4 has)")
    d = tmp_path / "d"
    d.mkdir()
    before = dir_flags(d)
    assert before is not None and not before & FS_TOPDIR_FL
    assert spread_children(d) and spread_children(d)
    assert dir_flags(d) == before | FS_TOPDIR_FL


def test_spread_children_changes_nothing_where_the_ioctl_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(fd: int, request: int, *args: object) -> object:
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    monkeypatch.setattr(spread.fcntl, "ioctl", refuse)
    assert not spread_children(tmp_path)
    assert dir_flags(tmp_path) is None
    store = BlobStore(tmp_path / "store")  # opens all the same
    assert store.tmp_dir.is_dir()


def test_spread_children_is_false_for_a_missing_dir_or_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to("target")
    assert not spread_children(tmp_path / "missing")
    assert not spread_children(tmp_path / "link")
