"""Secret dirs on /dev/shm are swept like store temp dirs: only when their owner is dead."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from builder.ops.secrets import store_tag, sweep_dead_secrets

OLD = time.time() - 60


def _secret_dir(shm: Path, name: str, *, age: float = OLD) -> Path:
    folder = shm / name
    folder.mkdir()
    (folder / "secret").write_text("s3cret")
    os.utime(folder, (age, age))
    return folder


def test_dead_secret_dirs_of_this_store_are_swept(tmp_path: Path) -> None:
    tag = store_tag(tmp_path / "store")
    dead = _secret_dir(tmp_path, f"pybuild-secret-{tag}-abc")
    assert sweep_dead_secrets(tag, shm=tmp_path) == 1
    assert not dead.exists()


def test_held_young_and_other_stores_secret_dirs_are_kept(tmp_path: Path) -> None:
    tag = store_tag(tmp_path / "store")
    held = _secret_dir(tmp_path, f"pybuild-secret-{tag}-held")
    young = _secret_dir(tmp_path, f"pybuild-secret-{tag}-young", age=time.time())
    other = _secret_dir(tmp_path, f"pybuild-secret-{store_tag(tmp_path / 'other')}-x")
    fd = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live build holds it
        assert sweep_dead_secrets(tag, shm=tmp_path) == 0
    finally:
        os.close(fd)
    assert held.exists() and young.exists() and other.exists()


def test_store_tag_names_the_resolved_store(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "link").symlink_to("store")
    assert store_tag(tmp_path / "link") == store_tag(tmp_path / "store")
    assert store_tag(tmp_path / "store") != store_tag(tmp_path / "other")
