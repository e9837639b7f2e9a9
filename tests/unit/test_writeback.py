"""A big blob is handed to writeback while it is written, in contiguous ranges; the
blob's bytes and digest are what they would be without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cache import store as store_module
from cache import writeback
from cache.digest import sha256_bytes
from cache.store import BlobStore


def test_a_big_blob_is_written_back_in_contiguous_ranges_while_it_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[int, int]] = []
    real = writeback.start

    def record(fd: int, offset: int, length: int) -> None:
        started.append((offset, length))
        real(fd, offset, length)  # the real call, on the blob's descriptor

    monkeypatch.setattr(store_module.writeback, "start", record)
    blobs = BlobStore(tmp_path / "store")
    data = os.urandom(1 << 20)
    with blobs.writer() as out:
        for _ in range(3 * writeback.STEP // len(data) + 1):
            out.write(data)
    assert [offset for offset, _ in started] == [0, writeback.STEP, 2 * writeback.STEP]
    assert all(length == writeback.STEP for _, length in started)
    whole = data * (3 * writeback.STEP // len(data) + 1)
    assert out.digest == sha256_bytes(whole)
    assert blobs.path(out.digest).read_bytes() == whole


def test_a_small_blob_is_left_to_its_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    monkeypatch.setattr(store_module.writeback, "start", lambda fd, o, n: started.append(o))
    blobs = BlobStore(tmp_path / "store")
    with blobs.writer() as out:
        out.write(b"x" * (writeback.STEP - 1))
    assert started == []


def test_starting_writeback_on_a_file_that_cannot_do_it_is_harmless(tmp_path: Path) -> None:
    read, write = os.pipe()  # sync_file_range fails on a pipe (ESPIPE): ignored
    try:
        writeback.start(write, 0, 4096)
    finally:
        os.close(read)
        os.close(write)
