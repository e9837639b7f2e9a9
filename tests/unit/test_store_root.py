"""The store root is private to its owner: created 0700, fixed or refused when wider."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache.errors import CacheError
from cache.index import Index
from cache.store import BlobStore
from cache.storeroot import StoreRootError, is_private, prepare_root


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_new_store_root_is_private_even_with_umask_000(tmp_path: Path, umask_000: None) -> None:
    root = tmp_path / "a" / "b" / "store"
    state = prepare_root(root)
    assert state.created and state.widened_mode is None
    assert _mode(root) == 0o700
    # Parents we had to make are at most 0755: never world-writable.
    assert _mode(root.parent) == 0o755
    assert _mode(root.parent.parent) == 0o755


def test_index_and_lock_files_are_owner_only_with_umask_000(
    tmp_path: Path, umask_000: None
) -> None:
    root = tmp_path / "store"
    prepare_root(root)
    blobs = BlobStore(root)
    with Index(root) as index:
        index.set_tag("docker.io/library/x:1", blobs.put_bytes(b"{}"))
    with blobs.lock("gc-probe"):
        pass
    assert _mode(root / "index.db") == 0o600
    assert _mode(root / "locks" / "gc-probe") == 0o600
    assert _mode(root / "locks" / "index.db") == 0o600


def test_existing_private_root_is_left_alone_whatever_it_holds(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir(mode=0o700)
    (root / "notes.txt").write_text("mine\n")
    os.chmod(root, 0o710)  # docker's /var/lib/docker mode is private enough
    state = prepare_root(root)
    assert not state.created and state.widened_mode is None
    assert _mode(root) == 0o710


def test_empty_wide_root_is_made_private_without_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    os.chmod(root, 0o777)
    state = prepare_root(root)
    assert state.widened_mode is None
    assert _mode(root) == 0o700


def test_wide_pybuild_store_is_made_private_and_reports_its_old_mode(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    BlobStore(root)
    Index(root).close()
    os.chmod(root, 0o755)
    state = prepare_root(root)
    assert state.widened_mode == 0o755
    assert _mode(root) == 0o700


def test_wide_unrelated_directory_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir()
    os.chmod(root, 0o755)
    (root / "thesis.tex").write_text("x\n")
    with pytest.raises(StoreRootError) as err:
        prepare_root(root)
    assert "other users can reach it" in err.value.message
    assert "not a pybuild store" in err.value.message
    assert err.value.hint is not None and f"chmod 700 {root}" in err.value.hint
    assert _mode(root) == 0o755
    assert sorted(p.name for p in root.iterdir()) == ["thesis.tex"]


def test_root_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    other = os.geteuid() + 1
    with pytest.raises(StoreRootError) as err:
        prepare_root(root, owner=other)
    assert f"belongs to uid {os.geteuid()}, not to uid {other}" in err.value.message
    assert err.value.hint is not None and "store of their own" in err.value.hint


def test_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.write_text("")
    with pytest.raises(CacheError, match="not a directory"):
        prepare_root(root)


@pytest.mark.parametrize(
    ("mode", "private"),
    [(0o700, True), (0o710, True), (0o750, False), (0o701, False), (0o755, False)],
)
def test_only_owner_bits_and_group_search_count_as_private(mode: int, private: bool) -> None:
    assert is_private(mode) is private
