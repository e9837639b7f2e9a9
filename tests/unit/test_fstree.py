"""fstree: walking and removing trees deeper than the recursion limit and PATH_MAX."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fstree.tree import copy_tree, remove_tree, walk

PATH_MAX = 4096


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """pytest's clean-up of old temp dirs (shutil.rmtree) dies on a tree deeper than the
    recursion limit and leaves that whole run's temp dirs behind: remove ours here."""
    yield
    remove_tree(tmp_path, ignore_errors=True)


def make_deep(root: Path, depth: int, name: str = "d") -> int:
    """A chain of ``depth`` dirs below ``root`` made fd-relatively, a file at each level;
    returns the length of the deepest path."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.symlink("/", "link", dir_fd=fd)
    finally:
        os.close(fd)
    return len(str(root)) + depth * (len(name) + 1)


def test_remove_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    depth = sys.getrecursionlimit() + 500
    (tmp_path / "t").mkdir()
    make_deep(tmp_path / "t", depth)
    remove_tree(tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_remove_tree_deeper_than_path_max(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    longest = make_deep(tmp_path / "t", 50, name="n" * 200)
    assert longest > 2 * PATH_MAX
    remove_tree(tmp_path / "t")
    assert os.listdir(tmp_path) == []


def test_remove_tree_needs_few_file_descriptors(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    make_deep(tmp_path / "t", 3000)
    # In a process of its own, under a limit of 16 more descriptors than it has open: the
    # pytest process may run other tests' threads, which open and close descriptors too.
    script = (
        "import os, resource, sys\n"
        "from fstree.tree import remove_tree\n"
        "n = len(os.listdir('/proc/self/fd'))\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (n + 16, hard))\n"
        "remove_tree(sys.argv[1])\n"
        "print(len(os.listdir('/proc/self/fd')) - n)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "t")],
        cwd=repo, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"  # none left open
    assert not (tmp_path / "t").exists()


def test_remove_tree_removes_a_wide_tree_with_files_links_and_empty_dirs(tmp_path: Path) -> None:
    top = tmp_path / "t"
    for i in range(50):
        (top / f"d{i}" / "e").mkdir(parents=True)
        (top / f"d{i}" / "file").write_text("x")
        (top / f"d{i}" / "sym").symlink_to(tmp_path)  # never followed
    outside = tmp_path / "keep"
    outside.write_text("kept")
    remove_tree(top)
    assert sorted(os.listdir(tmp_path)) == ["keep"]


def test_remove_tree_of_a_symlink_removes_only_the_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    remove_tree(tmp_path / "link")
    assert not os.path.lexists(tmp_path / "link")
    assert (tmp_path / "real" / "f").read_text() == "x"


def test_remove_tree_of_a_missing_path_is_a_no_op(tmp_path: Path) -> None:
    remove_tree(tmp_path / "absent")


def test_remove_tree_removes_read_only_dirs(tmp_path: Path) -> None:
    top = tmp_path / "t"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "f").write_text("x")
    for d in (top / "a" / "b", top / "a"):
        d.chmod(0o555)
    remove_tree(top)
    assert not top.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any dir")
def test_remove_tree_removes_unreadable_dirs_of_its_owner(tmp_path: Path) -> None:
    top = tmp_path / "t"
    (top / "a").mkdir(parents=True)
    (top / "a" / "f").write_text("x")
    (top / "a").chmod(0)
    remove_tree(top)
    assert not top.exists()


def test_walk_reports_every_entry_of_a_tree_deeper_than_path_max(tmp_path: Path) -> None:
    depth = sys.getrecursionlimit() + 500
    name = "n" * 10
    longest = make_deep(tmp_path, depth, name=name)
    assert longest > PATH_MAX
    entries = list(walk(tmp_path))
    assert len(entries) == 2 * depth + 1  # a dir and a file per level, one symlink
    rel, st = entries[-1]
    assert rel == "/".join([name] * depth) + "/link"
    assert stat.S_ISLNK(st.st_mode)


def test_walk_is_sorted_with_parents_before_children(tmp_path: Path) -> None:
    for rel in ("b/y", "a/z/q", "c"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "a" / "s").symlink_to(tmp_path)
    assert [rel for rel, _ in walk(tmp_path)] == [
        "a", "a/s", "a/z", "a/z/q", "b", "b/y", "c",
    ]  # fmt: skip


def test_walk_closes_its_descriptor_when_left_early(tmp_path: Path) -> None:
    make_deep(tmp_path, 20)
    before = len(os.listdir("/proc/self/fd"))
    it = walk(tmp_path)
    for _ in range(10):
        next(it)
    it.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_copy_tree_copies_a_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    depth = sys.getrecursionlimit() + 200
    make_deep(src, depth)
    (src / "d").chmod(0o750)
    copy_tree(src, tmp_path / "dst")
    assert [rel for rel, _ in walk(tmp_path / "dst")] == [rel for rel, _ in walk(src)]
    assert stat.S_IMODE(os.stat(tmp_path / "dst" / "d").st_mode) == 0o750
    assert os.readlink(tmp_path / "dst" / "/".join(["d"] * depth) / "link") == "/"


def test_copy_tree_fails_cleanly_beyond_path_max(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_deep(src, 30, name="n" * 200)
    with pytest.raises(OSError) as caught:
        copy_tree(src, tmp_path / "dst")
    assert caught.value.errno == errno.ENAMETOOLONG
