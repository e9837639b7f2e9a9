"""What a no-change rebuild writes to the index: its hits in one transaction, and no
tag rewrite for a tag that already names the image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cache.digest import Digest, sha256_bytes
from cache.index import Hit, Index, StepRecord
from cache.tagfile import read_tag, tag_file


def _digest(text: str) -> Digest:
    return sha256_bytes(text.encode())


def _record(key: str) -> StepRecord:
    return StepRecord(key, None, None, '{"version":1}', 1.5, 1700000000.0)


@pytest.fixture
def index(store_root: Path) -> Iterator[Index]:
    idx = Index(store_root)
    yield idx
    idx.close()


def test_record_hits_marks_each_record_used_and_keeps_its_inputs(index: Index) -> None:
    index.put_step(_record("k1"))
    index.put_step(_record("k2"))
    index.record_hits(
        [Hit("k1", "df#0#1", '{"a":1}', 1800000000.0), Hit("k2", "df#0#2", "{}", 2.0)]
    )
    used = {r.key: r.used for r in index.steps()}
    assert used == {"k1": 1800000000.0, "k2": 2.0}
    assert index.last_inputs("df#0#1") == '{"a":1}'
    assert index.last_inputs("df#0#2") == "{}"


def test_record_hits_replaces_changed_last_inputs(index: Index) -> None:
    index.put_step(_record("k1"))
    index.set_last_inputs("df#0#1", '{"old":1}')
    index.record_hits([Hit("k1", "df#0#1", '{"new":1}', 5.0)])
    assert index.last_inputs("df#0#1") == '{"new":1}'


def test_record_hits_of_nothing_leaves_the_index_as_it_was(index: Index) -> None:
    index.put_step(_record("k1"))
    index.record_hits([])
    assert [r.used for r in index.steps()] == [None]


def test_setting_a_tag_to_the_image_it_names_rewrites_no_tag_file(
    store_root: Path, index: Index
) -> None:
    index.set_tag("app:1", _digest("m1"))
    before = tag_file(store_root).stat()
    index.set_tag("app:1", _digest("m1"))
    after = tag_file(store_root).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_moving_a_tag_rewrites_the_tag_file(store_root: Path, index: Index) -> None:
    index.set_tag("app:1", _digest("m1"))
    index.set_tag("app:1", _digest("m2"))
    assert index.get_tag("app:1") == _digest("m2")
    assert read_tag(store_root, "app:1") == _digest("m2")


def test_a_tag_missing_from_the_tag_file_is_written_again(store_root: Path, index: Index) -> None:
    index.set_tag("app:1", _digest("m1"))
    tag_file(store_root).unlink()
    index.set_tag("app:1", _digest("m1"))
    assert read_tag(store_root, "app:1") == _digest("m1")


def test_read_tag_of_a_torn_tag_file_is_none(store_root: Path, index: Index) -> None:
    index.set_tag("app:1", _digest("m1"))
    tag_file(store_root).write_text('{"tags": ["not a mapping"]}')
    assert read_tag(store_root, "app:1") is None
    index.set_tag("app:1", _digest("m1"))  # so the next set_tag repairs it
    assert read_tag(store_root, "app:1") == _digest("m1")
