"""ENOSPC/EDQUOT say the disk is full, where, and what to do; too-deep trees fail cleanly."""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import cache.indexdb
from builder.cli.main import _guarded
from cache.errors import DiskFull, LayerError
from cache.indexdb import db_error
from cache.layers import write_layer
from cache.store import BlobStore
from fstree.tree import remove_tree


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """pytest's own clean-up of old temp dirs (shutil.rmtree) dies on deep trees."""
    yield
    remove_tree(tmp_path, ignore_errors=True)


class _FullFile:
    """Stands in for a blob's temp file on a full disk."""

    def __init__(self, code: int) -> None:
        self._code = code

    def write(self, data: object) -> int:
        raise OSError(self._code, os.strerror(self._code))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_blob_write_on_a_full_disk_says_so_and_leaves_no_temp_file(
    tmp_path: Path, code: int
) -> None:
    store = BlobStore(tmp_path / "store")
    with pytest.raises(DiskFull) as caught, store.writer() as w:
        w._file = _FullFile(code)  # type: ignore[assignment]
        w.write(b"x")
    assert "no space left" in caught.value.message
    assert caught.value.hint is not None
    assert str(store.tmp_dir) in caught.value.hint
    assert "is full" in caught.value.hint and "pybuild cache prune" in caught.value.hint
    assert os.listdir(store.tmp_dir) == []


def test_a_full_disk_under_the_index_is_not_called_a_busy_store(tmp_path: Path) -> None:
    error = db_error(tmp_path / "index.db", sqlite3.OperationalError("database or disk is full"))
    assert error.hint is not None
    assert "is full" in error.hint and "busy" not in error.hint


def _io_error() -> sqlite3.OperationalError:
    """What SQLite raises when a write of its WAL or shm file meets ENOSPC."""
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorcode = sqlite3.SQLITE_IOERR | (3 << 8)  # SQLITE_IOERR_WRITE
    return exc


def test_a_disk_io_error_on_a_full_disk_names_the_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache.indexdb, "_no_space_left", lambda directory: True)
    error = db_error(tmp_path / "index.db", _io_error())
    assert error.hint is not None
    assert "is full" in error.hint and "busy" not in error.hint


def test_a_disk_io_error_with_space_left_is_not_called_a_busy_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache.indexdb, "_no_space_left", lambda directory: False)
    error = db_error(tmp_path / "index.db", _io_error())
    assert error.hint is not None
    assert "busy" not in error.hint and "pybuild cache verify" in error.hint


def test_a_locked_index_is_called_busy(tmp_path: Path) -> None:
    exc = sqlite3.OperationalError("database is locked")
    exc.sqlite_errorcode = sqlite3.SQLITE_BUSY
    error = db_error(tmp_path / "index.db", exc)
    assert error.hint is not None and "busy" in error.hint


def test_an_unexpected_disk_full_error_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "f"))

    code = _guarded(handler, argparse.Namespace(subcommand="build", root=tmp_path))
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {tmp_path / 'f'}: No space left on device" in err
    assert "hint: the disk holding" in err and "pybuild cache prune" in err


def test_other_os_errors_still_raise(tmp_path: Path) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError):
        _guarded(handler, argparse.Namespace(subcommand="build", root=tmp_path))


def test_a_snapshot_deeper_than_path_max_fails_with_a_short_clear_error(tmp_path: Path) -> None:
    diff = tmp_path / "upper"
    diff.mkdir()
    fd = os.open(diff, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(30):
        os.mkdir("n" * 200, dir_fd=fd)
        child = os.open("n" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    store = BlobStore(tmp_path / "store")
    with pytest.raises(LayerError) as caught:
        write_layer(diff, store)
    assert "File name too long" in caught.value.message
    assert len(caught.value.message) < 600
    assert caught.value.hint is not None and "longer than the kernel allows" in caught.value.hint
    assert os.listdir(store.tmp_dir) == []
