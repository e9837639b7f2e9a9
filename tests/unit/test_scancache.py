"""COPY's context scans remembered in the store: reused only while nothing they read
changed, and always equal to a fresh walk."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.ops import scancache
from builder.ops.context import BuildContext, ContextEntry, ContextScan
from builder.ops.filekeys import file_records
from builder.ops.scancache import RememberingContext

SOURCES = [["src"], [""], ["src/a.txt", "src/sub"]]


def _later() -> float:
    return time.time() + 60  # every stat looks settled (older than the racy window)


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src" / "sub").mkdir(parents=True)
    (ctx / "src" / "a.txt").write_text("alpha\n")
    (ctx / "src" / "sub" / "b.txt").write_text("beta\n")
    (ctx / "src" / "sub" / "skip.tmp").write_text("ignored\n")
    (ctx / "src" / "link").symlink_to("a.txt")
    (ctx / ".dockerignore").write_text("**/*.tmp\n")
    return ctx


def _remembering(
    ctx: Path, tmp_path: Path, clock: Callable[[], float] = _later
) -> RememberingContext:
    return RememberingContext(ctx, tmp_path / "store", clock=clock)


def _same(got: ContextScan, want: ContextScan) -> None:
    assert got.fingerprint == want.fingerprint
    assert got.records() == want.records()


def _scan_twice(
    ctx: Path, tmp_path: Path, rels: list[str]
) -> tuple[RememberingContext, ContextScan]:
    _remembering(ctx, tmp_path).scan(rels)
    second = _remembering(ctx, tmp_path)
    return second, second.scan(rels)


@pytest.mark.parametrize("rels", SOURCES)
def test_an_unchanged_context_is_not_walked_again(tmp_path: Path, rels: list[str]) -> None:
    ctx = _context(tmp_path)
    second, got = _scan_twice(ctx, tmp_path, rels)
    assert second.reused == 1
    _same(got, BuildContext(ctx).scan(rels))


def test_a_reused_scan_gives_the_same_file_records(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    _remembering(ctx, tmp_path).fingerprint(["src"])
    second = _remembering(ctx, tmp_path)
    second.fingerprint(["src"])
    assert second.reused == 1
    assert file_records(second, ["src"]) == file_records(BuildContext(ctx), ["src"])


def _edit_keeping_size_and_mtime(ctx: Path) -> None:
    path = ctx / "src" / "a.txt"
    st = path.stat()
    path.write_text("ALPHA\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _swap_link(ctx: Path) -> None:
    (ctx / "src" / "link").unlink()
    (ctx / "src" / "link").symlink_to("sub/b.txt")


def _swap_source_dir(ctx: Path) -> None:
    (ctx / "src").rename(ctx / "old")
    (ctx / "new" / "sub").mkdir(parents=True)
    (ctx / "new" / "a.txt").write_text("alpha\n")
    (ctx / "new" / "sub" / "b.txt").write_text("beta\n")
    (ctx / "src").symlink_to("new")


MUTATIONS: dict[str, Callable[[Path], None]] = {
    "content, same size and mtime": _edit_keeping_size_and_mtime,
    "file added below": lambda ctx: (ctx / "src" / "sub" / "c.txt").write_text("gamma\n"),
    "file removed": lambda ctx: (ctx / "src" / "sub" / "b.txt").unlink(),
    "file renamed": lambda ctx: (ctx / "src" / "a.txt").rename(ctx / "src" / "z.txt"),
    "mode changed": lambda ctx: (ctx / "src" / "a.txt").chmod(0o600),
    "symlink retargeted": _swap_link,
    "source replaced by a symlink": _swap_source_dir,
    "ignore file changed": lambda ctx: (ctx / ".dockerignore").write_text("**/b.txt\n"),
}


# What each mutation leaves untouched of SOURCES[2] (src/a.txt and src/sub).
UNREAD_BY_THE_LAST_SOURCES = {"symlink retargeted"}
# Changes to files alone: no directory moved, so the recorded walks are taken again
# (their files read again) instead of walking.
FILES_ONLY = {"content, same size and mtime", "mode changed"}


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("rels", SOURCES)
def test_any_change_is_walked_and_matches_a_fresh_walk(
    tmp_path: Path, mutation: str, rels: list[str]
) -> None:
    ctx = _context(tmp_path)
    _remembering(ctx, tmp_path).scan(rels)
    MUTATIONS[mutation](ctx)
    second = _remembering(ctx, tmp_path)
    try:
        want = BuildContext(ctx).scan(rels)
    except BuildError as exc:  # a source is gone: the same error, never an old scan
        with pytest.raises(BuildError, match=re.escape(exc.message)):
            second.scan(rels)
        return
    _same(second.scan(rels), want)
    unread = rels == SOURCES[2] and mutation in UNREAD_BY_THE_LAST_SOURCES
    assert second.reused == (1 if unread else 0)
    assert second.replayed == (1 if mutation in FILES_ONLY else 0)


def _walk_view(walks: list[tuple[ContextEntry, ...]]) -> list[list[tuple[object, ...]]]:
    return [[(e.rel, e.path, e.kind, e.mode, e.size, e.link_target) for e in w] for w in walks]


@pytest.mark.parametrize("rels", SOURCES)
def test_an_edited_file_is_read_again_without_walking(tmp_path: Path, rels: list[str]) -> None:
    ctx = _context(tmp_path)
    _remembering(ctx, tmp_path).scan(rels)
    (ctx / "src" / "a.txt").write_text("alpha, edited to another size\n")
    (ctx / "src" / "sub" / "b.txt").chmod(0o751)
    second = _remembering(ctx, tmp_path)
    fingerprint = second.fingerprint(rels)
    fresh = BuildContext(ctx)
    assert (second.reused, second.replayed) == (0, 1)
    assert fingerprint == fresh.fingerprint(rels)
    assert file_records(second, rels) == file_records(fresh, rels)
    # The COPY that runs copies the entries the key covered: the same as a fresh walk's.
    assert _walk_view(second.take_walks(rels)) == _walk_view(fresh.take_walks(rels))


def test_a_replayed_scan_reads_only_the_files_that_moved(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    _remembering(ctx, tmp_path).scan([""])
    (ctx / "src" / "a.txt").write_text("alpha, edited\n")
    second = _remembering(ctx, tmp_path)
    read: list[str] = []
    plain = second.hash_file

    def counting(path: Path, st: os.stat_result | None = None) -> bytes:
        read.append(os.path.relpath(path, ctx))
        return plain(path, st)

    second.hash_file = counting
    _same(second.scan([""]), BuildContext(ctx).scan([""]))
    assert (second.replayed, read) == (1, ["src/a.txt"])


def test_a_replayed_scan_is_kept_for_the_next_build(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    _remembering(ctx, tmp_path).scan(["src"])
    (ctx / "src" / "a.txt").write_text("alpha, edited\n")
    assert _remembering(ctx, tmp_path).scan(["src"]).fingerprint
    third = _remembering(ctx, tmp_path)
    _same(third.scan(["src"]), BuildContext(ctx).scan(["src"]))
    assert (third.reused, third.replayed) == (1, 0)


def test_an_exception_pattern_keeps_no_record(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / ".dockerignore").write_text("**/*.tmp\n!src/sub/skip.tmp\n")
    _remembering(ctx, tmp_path).scan(["src"])
    assert not (tmp_path / "store" / "scans").exists()


def test_a_context_changed_within_the_racy_window_keeps_no_record(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    _remembering(ctx, tmp_path, clock=time.time).scan(["src"])  # files made just now
    assert not list((tmp_path / "store" / "scans").glob("*.json"))


def test_a_torn_record_is_walked(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    _remembering(ctx, tmp_path).scan(["src"])
    (record,) = (tmp_path / "store" / "scans").glob("*.json")
    doc = json.loads(record.read_text())
    doc["entries"][0][1][3] = "not a stat"
    record.write_text(json.dumps(doc))
    second = _remembering(ctx, tmp_path)
    _same(second.scan(["src"]), BuildContext(ctx).scan(["src"]))
    assert second.reused == 0


def test_only_the_newest_records_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scancache, "KEEP", 2)
    ctx = _context(tmp_path)
    remembering = _remembering(ctx, tmp_path)
    for rels in (["src"], ["src/a.txt"], ["src/sub"]):
        remembering.scan(rels)
    assert len(list((tmp_path / "store" / "scans").glob("*.json"))) == 2
