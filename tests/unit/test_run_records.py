"""Container records in the store: lookup by name or id prefix, dead monitors, signals."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.run.containers import Record, _signal_number, find, load, records, save


def make(root: Path, cid: str, name: str, **fields: object) -> Record:
    (root / "containers" / cid).mkdir(parents=True)
    record = Record(cid, name, "busybox", ("true",), f"2026-01-01T00:00:0{len(cid) % 10}", **fields)  # type: ignore[arg-type]
    save(root, record)
    return record


def test_find_by_name_then_by_unique_id_prefix(tmp_path: Path) -> None:
    a = make(tmp_path, "abc123", "web")
    b = make(tmp_path, "abd456", "db")
    assert find(tmp_path, "web") == a
    assert find(tmp_path, "abd") == b
    with pytest.raises(UsageError, match="ambiguous"):
        find(tmp_path, "ab")
    with pytest.raises(UsageError, match="does not exist"):
        find(tmp_path, "zzz")


def test_running_record_with_a_dead_monitor_reads_as_exited(tmp_path: Path) -> None:
    make(tmp_path, "c1", "x", status="running", pid=2**22 + 12345)
    record = load(tmp_path, "c1")
    assert record is not None and record.status == "exited" and "monitor died" in record.error


def test_dirs_without_a_record_are_not_containers(tmp_path: Path) -> None:
    (tmp_path / "containers" / "foreground-run").mkdir(parents=True)
    make(tmp_path, "c2", "y")
    assert [r.id for r in records(tmp_path)] == ["c2"]


@pytest.mark.parametrize(
    ("text", "number"),
    [("SIGTERM", signal.SIGTERM), ("quit", signal.SIGQUIT), ("10", 10), ("SIGNOPE", 15)],
)
def test_stop_signal_names_as_docker_reads_them(text: str, number: int) -> None:
    assert _signal_number(text) == number
