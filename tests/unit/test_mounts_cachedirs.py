"""Cache mount directories: naming, creation, sharing modes (plain files, no root)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from builder.ops.cachemounts import CacheRequest, cache_dir, cache_home

_ME = {"uid": os.getuid(), "gid": os.getgid()}


def test_cache_dir_persists_between_uses(tmp_path: Path) -> None:
    request = CacheRequest("pip", **_ME)
    with cache_dir(tmp_path, request) as first:
        (first / "f").write_text("kept")
    with cache_dir(tmp_path, request) as again:
        assert (again / "f").read_text() == "kept"
    assert (cache_home(tmp_path, request) / "id").read_text() == "pip\n"


def test_new_cache_gets_mode(tmp_path: Path) -> None:
    with cache_dir(tmp_path, CacheRequest("m", mode=0o700, **_ME)) as path:
        assert path.stat().st_mode & 0o7777 == 0o700


def test_ids_and_seeds_name_different_caches(tmp_path: Path) -> None:
    a = cache_home(tmp_path, CacheRequest("a"))
    assert a != cache_home(tmp_path, CacheRequest("b"))
    assert a != cache_home(tmp_path, CacheRequest("a", seed=tmp_path, seed_key="k1"))


def test_seed_fills_a_new_cache_only(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "x").write_text("seeded")
    request = CacheRequest("s", seed=seed, seed_key="stage:1:/", **_ME)
    with cache_dir(tmp_path / "store", request) as path:
        assert (path / "x").read_text() == "seeded"
        (path / "x").write_text("changed")
    with cache_dir(tmp_path / "store", request) as path:
        assert (path / "x").read_text() == "changed"


def test_shared_users_get_the_same_dir_at_once(tmp_path: Path) -> None:
    request = CacheRequest("sh", **_ME)
    with cache_dir(tmp_path, request) as one, cache_dir(tmp_path, request) as two:
        assert one == two


def test_private_users_get_their_own_dirs_while_both_hold_them(tmp_path: Path) -> None:
    request = CacheRequest("pv", sharing="private", **_ME)
    with cache_dir(tmp_path, request) as one, cache_dir(tmp_path, request) as two:
        assert one != two
    with cache_dir(tmp_path, request) as again:
        assert again == one  # a free instance is reused


def test_locked_users_wait_for_each_other(tmp_path: Path) -> None:
    request = CacheRequest("lk", sharing="locked", **_ME)
    entered = threading.Event()

    def second() -> None:
        with cache_dir(tmp_path, request):
            entered.set()

    with cache_dir(tmp_path, request):
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(0.3)  # blocked while we hold it
    thread.join(5)
    assert entered.is_set()
