"""Index: build records (stats read them), step use times, and the v1 -> v2 upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cache.index import BuildRecord, BuildStep, Index, StepRecord


def _build(build_id: str, started: float, dockerfile: str = "/ctx/Dockerfile") -> BuildRecord:
    steps = (
        BuildStep("/ctx/Dockerfile#0#1", "k1", True, "", 0.01, 100, 2.5),
        BuildStep("/ctx/Dockerfile#0#2", "k2", False, "first build", 1.0, 50, 0.0),
        BuildStep("/ctx/Dockerfile#0#3", None, True, "", 0.0, 0, 0.5),
    )
    return BuildRecord(build_id, dockerfile, started, started + 2, steps)


def test_build_record_round_trips_with_its_steps_in_order(store_root: Path) -> None:
    with Index(store_root) as index:
        index.record_build(_build("b1", 100.0))
        assert index.builds() == [_build("b1", 100.0)]


def test_build_totals_count_only_hits() -> None:
    build = _build("b1", 100.0)
    assert build.cached == 2
    assert build.time_saved == pytest.approx(3.0)
    assert build.bytes_reused == 100


def test_builds_since_filters_by_start_time_oldest_first(store_root: Path) -> None:
    with Index(store_root) as index:
        index.record_build(_build("late", 300.0))
        index.record_build(_build("early", 100.0))
        assert [b.id for b in index.builds()] == ["early", "late"]
        assert [b.id for b in index.builds(since=200.0)] == ["late"]


def test_remove_builds_before_a_time_drops_them_and_their_steps(store_root: Path) -> None:
    with Index(store_root) as index:
        index.record_build(_build("old", 100.0))
        index.record_build(_build("new", 300.0))
        assert index.remove_builds(200.0) == 1
        assert [b.id for b in index.builds()] == ["new"]
    db = sqlite3.connect(store_root / "index.db")
    assert db.execute("SELECT COUNT(*) FROM build_steps WHERE build_id='old'").fetchone()[0] == 0
    db.close()


def test_touch_step_records_last_use(store_root: Path) -> None:
    with Index(store_root) as index:
        index.put_step(StepRecord("k", None, None, "{}", 1.0, 10.0))
        assert index.get_step("k") is not None
        assert index.get_step("k").used is None  # type: ignore[union-attr]
        index.touch_step("k", 99.0)
        assert index.get_step("k").used == 99.0  # type: ignore[union-attr]


def test_version_1_index_is_upgraded_in_place_keeping_its_records(store_root: Path) -> None:
    db = sqlite3.connect(store_root / "index.db")
    db.executescript(
        "CREATE TABLE steps (key TEXT PRIMARY KEY, layer TEXT, layer_digest TEXT, "
        "diff_id TEXT, inputs TEXT NOT NULL, duration REAL NOT NULL, created REAL NOT NULL);"
        "CREATE TABLE tags (name TEXT PRIMARY KEY, manifest TEXT NOT NULL);"
        "CREATE TABLE last_inputs (step_id TEXT PRIMARY KEY, inputs TEXT NOT NULL);"
        "INSERT INTO steps VALUES ('k', NULL, NULL, NULL, '{}', 1.5, 7.0);"
        "PRAGMA user_version = 1;"
    )
    db.close()
    with Index(store_root) as index:
        assert index.get_step("k") == StepRecord("k", None, None, "{}", 1.5, 7.0)
        index.record_build(_build("b", 1.0))
        assert len(index.builds()) == 1
    with Index(store_root) as again:  # a second open sees version 2 and does nothing
        assert again.get_step("k") is not None
