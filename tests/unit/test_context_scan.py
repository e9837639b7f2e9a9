"""One walk per COPY key: fingerprint and per-file records share it, and stay exact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.ops.context import BuildContext, ContextScan
from builder.ops.filekeys import file_records
from fstree.tree import remove_tree


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "a.py").write_text("print('a')\n")
    (root / "src" / "sub" / "b.py").write_text("print('b')\n")
    os.symlink("a.py", root / "src" / "link")
    return root


class Counting:
    def __init__(self, ctx: BuildContext) -> None:
        self.real = ctx.hash_file
        self.calls: list[tuple[Path, os.stat_result | None]] = []

    def __call__(self, path: Path, st: os.stat_result | None = None) -> bytes:
        self.calls.append((path, st))
        return self.real(path, st)


def test_records_after_the_fingerprint_reuse_its_walk(root: Path) -> None:
    ctx = BuildContext(root)
    counting = Counting(ctx)
    ctx.hash_file = counting
    ctx.fingerprint(["src"])
    records = file_records(ctx, ["src"])
    assert len(counting.calls) == 2  # a.py and b.py, once each across both
    assert records == file_records(BuildContext(root), ["src"])


def test_records_without_a_fingerprint_walk_on_their_own(root: Path) -> None:
    records = dict(file_records(BuildContext(root), ["src"]))
    assert set(records) == {"src", "src/a.py", "src/link", "src/sub", "src/sub/b.py"}


def test_a_kept_walk_is_used_once_so_later_records_see_later_edits(root: Path) -> None:
    ctx = BuildContext(root)
    ctx.fingerprint(["src"])
    before = dict(file_records(ctx, ["src"]))
    (root / "src" / "a.py").write_text("print('changed')\n")
    after = dict(file_records(ctx, ["src"]))
    assert before["src/a.py"] != after["src/a.py"]


def test_a_walk_of_other_sources_or_excludes_is_not_reused(root: Path) -> None:
    ctx = BuildContext(root)
    ctx.fingerprint(["src"], excludes=["*.py"])
    assert "src/a.py" in dict(file_records(ctx, ["src"]))
    ctx.fingerprint(["src/sub"])
    assert "src/a.py" not in dict(file_records(ctx, ["src"], excludes=["a.py"]))


def test_scan_fingerprint_equals_fingerprint(root: Path) -> None:
    ctx = BuildContext(root)
    scan = ctx.scan(["src", "src/a.py"])
    assert scan.fingerprint == ctx.fingerprint(["src", "src/a.py"])
    assert [e.rel for e, _ in scan.entries].count("src/a.py") == 2  # both sources walked


def test_files_are_hashed_with_the_walks_lstat(root: Path) -> None:
    ctx = BuildContext(root)
    counting = Counting(ctx)
    ctx.hash_file = counting
    ctx.fingerprint(["src"])
    for path, st in counting.calls:
        assert st is not None and st.st_ino == os.lstat(path).st_ino


def test_a_context_deeper_than_the_recursion_limit_is_walked_and_fingerprinted(
    tmp_path: Path,
) -> None:
    import sys

    root = tmp_path / "ctx"
    depth = sys.getrecursionlimit() + 200  # 2,400 bytes of path: under PATH_MAX
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):  # fd-relative: Path.mkdir(parents=True) recurses
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    (root / ".dockerignore").write_text("*.tmp\n")
    try:
        ctx = BuildContext(root)
        names = [e.rel for e in ctx.walk("")]
        assert names[-1] == "/".join(["d"] * depth) + "/f"
        assert len(names) == depth + 2  # ".dockerignore", every d, then f
        assert ctx.fingerprint(["d"])
    finally:
        remove_tree(root)  # pytest's own clean-up (shutil.rmtree) dies on deep trees


def test_the_copy_takes_the_walks_its_key_made_once(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = BuildContext(root)
    rels = ["src", "src/a.py"]
    ctx.fingerprint(rels)
    fresh = [tuple(BuildContext(root).walk(rel)) for rel in rels]

    def no_walk(*args: object, **kwargs: object) -> None:
        raise AssertionError("walked again")

    with monkeypatch.context() as patched:
        patched.setattr(ctx, "walk", no_walk)
        assert ctx.take_walks(rels) == fresh
    (root / "src" / "new.py").write_text("")
    again = [e.rel for walk in ctx.take_walks(rels) for e in walk]  # handed out once
    assert "src/new.py" in again


def test_walks_of_other_excludes_are_not_taken(root: Path) -> None:
    ctx = BuildContext(root)
    ctx.fingerprint(["src"], excludes=["*.py"])
    (walk,) = ctx.take_walks(["src"])
    assert "src/a.py" in [e.rel for e in walk]


def test_a_scan_without_walks_leaves_the_copy_to_walk(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = BuildContext(root)
    done = ctx.scan(["src"])
    monkeypatch.setattr(ctx, "scan", lambda *a, **k: ContextScan(done.fingerprint, done.entries))
    ctx.fingerprint(["src"])  # as a remembered scan (builder.ops.scancache) comes back
    assert ctx.take_walks(["src"]) == [tuple(ctx.walk("src"))]
