"""Behaviour of BuildContext.fingerprint: it changes exactly when a COPY would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import builder.ops.context
from builder.ops.context import BuildContext


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "a.py").write_text("print('a')\n")
    (root / "src" / "sub" / "b.py").write_text("print('b')\n")
    (root / "src" / "cache.tmp").write_text("junk\n")
    os.symlink("a.py", root / "src" / "link")
    (root / ".dockerignore").write_text("**/*.tmp\n")
    return root


def fp(root: Path, *rels: str) -> str:
    return BuildContext(root).fingerprint(list(rels) or ["src"])


def test_fingerprint_is_a_deterministic_xxh3_128_hex(root: Path) -> None:
    first = fp(root)
    assert first == fp(root)
    assert len(first) == 32
    int(first, 16)


def test_same_tree_elsewhere_has_same_fingerprint(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere"
    shutil.copytree(root, copy, symlinks=True)
    assert fp(copy) == fp(root)


def test_ignored_file_changes_do_not_change_it(root: Path) -> None:
    before = fp(root)
    (root / "src" / "cache.tmp").write_text("other junk\n")
    (root / "src" / "new.tmp").write_text("more\n")
    assert fp(root) == before


def test_mtime_only_change_does_not_change_it(root: Path) -> None:
    before = fp(root)
    os.utime(root / "src" / "a.py", (1, 1))
    os.utime(root / "src" / "sub", (2, 2))
    assert fp(root) == before


def test_content_change_of_same_size_changes_it(root: Path) -> None:
    before = fp(root)
    (root / "src" / "a.py").write_text("print('A')\n")
    assert fp(root) != before


def test_mode_change_changes_it(root: Path) -> None:
    before = fp(root)
    os.chmod(root / "src" / "a.py", 0o755)
    assert fp(root) != before


def test_dir_mode_change_changes_it(root: Path) -> None:
    before = fp(root)
    os.chmod(root / "src" / "sub", 0o700)
    assert fp(root) != before


def test_symlink_retarget_changes_it(root: Path) -> None:
    before = fp(root)
    os.remove(root / "src" / "link")
    os.symlink("sub/b.py", root / "src" / "link")
    assert fp(root) != before


def test_rename_changes_it(root: Path) -> None:
    before = fp(root)
    os.rename(root / "src" / "sub" / "b.py", root / "src" / "sub" / "c.py")
    assert fp(root) != before


def test_new_empty_dir_changes_it(root: Path) -> None:
    before = fp(root)
    (root / "src" / "empty").mkdir()
    assert fp(root) != before


def test_moving_bytes_between_files_changes_it(root: Path) -> None:
    # Guards against ambiguous framing: ("ab", "c") must differ from ("a", "bc").
    (root / "src" / "a.py").write_text("ab")
    (root / "src" / "sub" / "b.py").write_text("c")
    before = fp(root)
    (root / "src" / "a.py").write_text("a")
    (root / "src" / "sub" / "b.py").write_text("bc")
    assert fp(root) != before


def test_only_the_named_sources_count(root: Path) -> None:
    before = fp(root, "src/sub")
    (root / "src" / "a.py").write_text("changed\n")
    (root / "elsewhere.txt").write_text("new\n")
    assert fp(root, "src/sub") == before


def test_source_order_counts(root: Path) -> None:
    assert fp(root, "src/a.py", "src/sub") != fp(root, "src/sub", "src/a.py")


def test_excludes_leave_excluded_files_out(root: Path) -> None:
    ctx = BuildContext(root)
    before = ctx.fingerprint(["src"], excludes=["*.py"])
    (root / "src" / "a.py").write_text("changed\n")
    assert ctx.fingerprint(["src"], excludes=["*.py"]) == before


def test_each_file_is_read_once_per_call(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Path] = []
    real = builder.ops.context._hash_file

    def counting(path: Path) -> bytes:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(builder.ops.context, "_hash_file", counting)
    BuildContext(root).fingerprint(["src", "src/a.py", "src/sub"])
    assert sorted(reads) == sorted({root / "src" / "a.py", root / "src" / "sub" / "b.py"})


def test_fifo_is_fingerprinted_without_being_opened(root: Path) -> None:
    os.mkfifo(root / "src" / "pipe")
    assert fp(root) == fp(root)  # would block forever if the fifo were read


def test_large_file_streams_in_chunks(root: Path) -> None:
    big = root / "src" / "big.bin"
    big.write_bytes(b"x" * (3 * (1 << 20) + 5))
    before = fp(root)
    with big.open("r+b") as f:
        f.seek(3 * (1 << 20) + 2)
        f.write(b"y")
    assert fp(root) != before
