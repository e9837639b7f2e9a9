"""Deletions in unpacked layers where the store's filesystem refuses 0/0 char devices
(overlayfs, as a container's own root): the xattr form, read as the same whiteout by
the layer tar writer, the copy snapshotter and extraction, and kept out of overlay mounts.

The refusal is the kernel's EPERM from mknod, stood in for here by patching os.mknod for
0/0 only; the real overlayfs root is tests/integration/test_ci_job_container.py.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cache.extract import extract_layer
from cache.layers import Compression, write_layer
from cache.store import BlobStore
from fstree import whiteout
from runtime import rootfs as rootfs_module
from runtime import snapshot, snapshotter
from runtime.spec import Rootfs

pytestmark = pytest.mark.requires_root  # 0/0 char devices need CAP_MKNOD


@pytest.fixture
def refuse_whiteout_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_whiteout_devices(monkeypatch)


@pytest.fixture
def overlay_mountable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel has overlayfs and nothing asks for the copy snapshotter."""
    monkeypatch.delenv("PYBUILD_SNAPSHOTTER", raising=False)
    monkeypatch.setattr(rootfs_module, "overlay_supported", lambda: True)
    monkeypatch.setattr(rootfs_module, "in_initial_namespace", lambda: True)


def _refuse_whiteout_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """mknod(0/0) fails with EPERM, as on overlayfs; other nodes are made."""
    real: Callable[..., None] = os.mknod

    def mknod(path: Any, mode: int = 0o600, device: int = 0, **kw: Any) -> None:
        if stat.S_ISCHR(mode) and device == 0:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        real(path, mode, device, **kw)

    monkeypatch.setattr(os, "mknod", mknod)


def _tree(tmp_path: Path) -> Rootfs:
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "group").write_text("root:x:0:\n")
    (lower / "etc" / "passwd").write_text("root\n")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    return Rootfs((lower,), upper, work)


def _delete_group(rootfs: Rootfs) -> None:
    copy = snapshot.prepare(rootfs)
    os.unlink(copy.merged / "etc" / "group")
    snapshot.finish(rootfs, copy)


def _layer(blobs: BlobStore, diff: Path) -> bytes:
    return blobs.read_bytes(write_layer(diff, blobs, compression=Compression.NONE).digest)


def test_a_refused_device_records_the_deletion_in_the_xattr_form(
    tmp_path: Path, refuse_whiteout_devices: None
) -> None:
    rootfs = _tree(tmp_path)
    _delete_group(rootfs)
    entry = rootfs.upper / "etc" / "group"
    st = entry.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0
    assert os.getxattr(entry, whiteout.XATTR) == b"y"
    assert os.getxattr(rootfs.upper / "etc", whiteout.PARENT_XATTR) == b"y"
    assert snapshotter.is_whiteout(entry, st)
    assert whiteout.marked(rootfs.upper)


def test_both_forms_give_the_same_layer_tar(
    tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = BlobStore(store_root)
    device_form = _tree(tmp_path / "a")
    _delete_group(device_form)
    assert stat.S_ISCHR((device_form.upper / "etc" / "group").lstat().st_mode)
    _refuse_whiteout_devices(monkeypatch)
    xattr_form = _tree(tmp_path / "b")
    _delete_group(xattr_form)
    assert whiteout.marked(xattr_form.upper)
    os.utime(xattr_form.upper / "etc", ns=(0, (device_form.upper / "etc").stat().st_mtime_ns))
    assert _layer(blobs, xattr_form.upper) == _layer(blobs, device_form.upper)


def test_an_extracted_base_whiteout_hides_the_file_and_keeps_the_layers_from_overlayfs(
    tmp_path: Path, store_root: Path, refuse_whiteout_devices: None, overlay_mountable: None
) -> None:
    blobs = BlobStore(store_root)
    rootfs = _tree(tmp_path)
    _delete_group(rootfs)  # a layer holding ".wh.group"
    layer = write_layer(rootfs.upper, blobs, compression=Compression.NONE)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    extract_layer(blobs, layer.descriptor(), unpacked)
    assert whiteout.has_xattr(unpacked / "etc" / "group") and whiteout.marked(unpacked)
    upper, work = tmp_path / "u2", tmp_path / "w2"
    upper.mkdir()
    work.mkdir()
    stacked = Rootfs((unpacked, *rootfs.lowers), upper, work)
    copy = snapshot.prepare(stacked)
    try:
        assert sorted(os.listdir(copy.merged / "etc")) == ["passwd"]
    finally:
        snapshot.discard(copy)
    # A rootful overlay mount would show the xattr form as an empty file: never mounted.
    assert rootfs_module.use_copy_snapshotter(stacked)
    assert not rootfs_module.use_copy_snapshotter(rootfs)


def test_a_run_cannot_forge_the_xattr_form(tmp_path: Path) -> None:
    rootfs = _tree(tmp_path)
    copy = snapshot.prepare(rootfs)
    forged = copy.merged / "etc" / "forged"
    forged.write_bytes(b"")
    os.chmod(forged, 0)
    os.setxattr(forged, whiteout.XATTR, b"y")
    snapshot.finish(rootfs, copy)
    kept = rootfs.upper / "etc" / "forged"
    assert not whiteout.has_xattr(kept)
    assert not snapshotter.is_whiteout(kept, kept.lstat())
    assert not whiteout.marked(rootfs.upper)
