"""``pybuild cache history``: one row per recorded build, and miss reasons by kind.

A step's miss reason is the text the solver gave (``builder.solve``, ``cache.keys``:
"first build", "file app.py changed (content)", "ARG V changed (1 → 2)"...). Its kinds
are counted once per step: a step that missed for a changed file and a changed ARG counts
under ``source`` and ``arg``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cache.index import BuildRecord

# Reason prefix -> kind, first match wins (longer prefixes first where they overlap).
_KINDS: tuple[tuple[str, str], ...] = (
    ("first build", "first-build"),
    ("--no-cache-filter", "no-cache"),
    ("--no-cache", "no-cache"),
    ("base image changed", "base-image"),
    ("parent step missed", "parent"),
    ("instruction text changed", "instruction"),
    ("ARG/ENV ", "arg"),
    ("ARG ", "arg"),
    ("ENV ", "env"),
    ("file ", "source"),
    ("directory ", "source"),  # the per-file reasons (cache.keys._file_reasons)
    ("symlink ", "source"),
    ("and ", "source"),  # "and 3 more files"
    ("source", "source"),
    ("stage ", "source"),
    ("platform changed", "platform"),
    ("option ", "option"),
    ("not in the cache", "evicted"),
    ("cached by another pybuild version", "version"),
)


def reason_kinds(reason: str) -> set[str]:
    """The kinds of one step's miss reason ("" for a hit: no kind)."""
    kinds = set()
    for part in filter(None, (p.strip() for p in reason.split(";"))):
        kinds.add(next((kind for prefix, kind in _KINDS if part.startswith(prefix)), "other"))
    return kinds


def miss_kinds(builds: Sequence[BuildRecord]) -> dict[str, int]:
    """Missed steps per kind over ``builds``, most frequent first."""
    counts: Counter[str] = Counter()
    for build in builds:
        for step in build.steps:
            if not step.cached:
                counts.update(reason_kinds(step.reason) or {"other"})
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def history_rows(builds: Sequence[BuildRecord]) -> list[dict[str, Any]]:
    """One JSON-able row per build, oldest first."""
    rows = []
    for b in builds:
        steps = len(b.steps)
        rows.append(
            {
                "id": b.id,
                "started": _iso(b.started),
                "dockerfile": b.dockerfile,
                "tags": list(b.tags),
                "labels": dict(b.labels),
                "image_id": b.image_id,
                "steps": steps,
                "cached": b.cached,
                "hit_rate": round(b.cached / steps, 4) if steps else None,
                "duration": round(b.finished - b.started, 3),
                "misses": miss_kinds([b]),
            }
        )
    return rows


def history_json(builds: Sequence[BuildRecord]) -> str:
    return json.dumps({"builds": history_rows(builds)}, indent=2)


def history_table(builds: Sequence[BuildRecord]) -> list[tuple[str, ...]]:
    """The text table: a header, then one row per build."""
    header = ("TIME", "DOCKERFILE", "TAGS", "STEPS", "CACHED", "HIT RATE", "DURATION", "MISSES")
    table: list[tuple[str, ...]] = [header]
    for row in history_rows(builds):
        rate = "-" if row["hit_rate"] is None else f"{100 * row['hit_rate']:.0f}%"
        misses = ", ".join(f"{k}={n}" for k, n in row["misses"].items()) or "-"
        table.append(
            (
                _local(row["started"]),
                row["dockerfile"],
                ",".join(row["tags"]) or "-",
                str(row["steps"]),
                str(row["cached"]),
                rate,
                f"{row['duration']:.1f}s",
                misses,
            )
        )
    return table


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(iso: str) -> str:
    when = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when.timestamp()))
