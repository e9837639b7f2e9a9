"""The copy snapshotter's parked trees: the next step on top of a step takes its merged
copy instead of copying the layers again, and sees exactly what a fresh copy shows."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fstree.tree import walk
from runtime import snapshot, warmcopies
from runtime.spec import Rootfs


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "warm"
    directory.mkdir()
    with warmcopies.keep(directory):
        yield directory


def _base(tmp_path: Path) -> Path:
    lower = tmp_path / "base"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "hosts").write_text("image hosts\n")
    (lower / "etc" / "passwd").write_text("root\n")
    (lower / "dev").mkdir()
    (lower / "bin").mkdir()
    (lower / "bin" / "sh").write_text("sh")
    for path in (lower / "etc", lower / "dev", lower):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    return lower


def _step(tmp_path: Path, name: str, lowers: tuple[Path, ...]) -> Rootfs:
    upper, work = tmp_path / name / "upper", tmp_path / name / "work"
    upper.mkdir(parents=True)
    work.mkdir()
    return Rootfs(lowers, upper, work)


def _seed(root: Path) -> None:
    (root / "etc" / "hosts").unlink()
    (root / "etc" / "hosts").write_text("the job's hosts\n")
    (root / "dev" / "null").write_text("stand-in")


def _adopt(rootfs: Rootfs, tmp_path: Path, name: str) -> Path:
    """As the store does: the upper renamed into place as a layer dir."""
    layer = tmp_path / "layers" / name
    layer.parent.mkdir(exist_ok=True)
    os.rename(rootfs.upper, layer)
    return layer


def _tree(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for rel, st in walk(root):  # the walk the diff uses
        content = (root / rel).read_text() if stat.S_ISREG(st.st_mode) else ""
        out[rel] = (st.st_mode, st.st_mtime_ns if stat.S_ISDIR(st.st_mode) else 0, content)
    return out


def test_the_next_step_takes_the_parked_copy_and_sees_what_a_fresh_copy_shows(
    tmp_path: Path, pool: Path
) -> None:
    base = _base(tmp_path)
    first = _step(tmp_path, "one", (base,))
    copy = snapshot.prepare(first, seed=_seed, private=frozenset({"dev", "etc/hosts"}), warm=True)
    (copy.merged / "etc" / "passwd").write_text("root\napp\n")
    (copy.merged / "dev" / "written-by-the-step").write_text("x")  # private: no layer
    kept_ino = (copy.merged / "bin" / "sh").stat().st_ino
    snapshot.finish(first, copy, warm=True)
    assert len(list(pool.iterdir())) == 1 and not copy.merged.exists()  # parked
    layer = _adopt(first, tmp_path, "one")

    second = _step(tmp_path, "two", (layer, base))
    reused = snapshot.prepare(second, warm=True)  # a COPY step: no seed
    assert (reused.merged / "bin" / "sh").stat().st_ino == kept_ino  # no copy was made
    fresh_rootfs = _step(tmp_path, "fresh", (layer, base))
    fresh = snapshot.prepare(fresh_rootfs)  # no pool entry for this upper: a real copy
    try:
        assert _tree(reused.merged) == _tree(fresh.merged)
        assert (reused.merged / "etc" / "hosts").read_text() == "image hosts\n"
        assert not (reused.merged / "dev" / "written-by-the-step").exists()
    finally:
        snapshot.discard(fresh)
    (reused.merged / "new").write_text("n")
    snapshot.finish(second, reused)
    assert sorted(os.listdir(second.upper)) == ["new"]


def test_a_stack_that_differs_gets_a_fresh_copy_and_the_pool_is_emptied_at_the_end(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "warm"
    directory.mkdir()
    base = _base(tmp_path)
    with warmcopies.keep(directory):
        first = _step(tmp_path, "one", (base,))
        copy = snapshot.prepare(first, warm=True)
        snapshot.finish(first, copy, warm=True)
        other = _step(tmp_path, "other", (base,))  # on the base, not on step one
        again = snapshot.prepare(other, warm=True)
        assert len(list(directory.iterdir())) == 1  # step one's stays parked, untaken
        snapshot.discard(again)
    assert list(directory.iterdir()) == []


def test_without_a_pool_the_copy_is_deleted(tmp_path: Path) -> None:
    first = _step(tmp_path, "one", (_base(tmp_path),))
    copy = snapshot.prepare(first, warm=True)
    snapshot.finish(first, copy, warm=True)
    assert not copy.merged.exists()
