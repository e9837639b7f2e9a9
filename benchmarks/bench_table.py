"""The benchmark's figures: raw runs in, medians and pybuild/peer ratios out, as one table.

Pure functions only (no builds, no clock), so they are unit-tested. A run is a dict
``{"scenario", "metric", "tool", "run", "seconds", "hit_rate", "load"}``; ``seconds`` is
None when that build failed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

Run = dict[str, Any]
METRICS = ("cold", "warm", "edit", "export", "no-cache")


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are there; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(mine: float | None, peer: float | None) -> float | None:
    """pybuild's time over the peer's (2.0: pybuild takes twice as long)."""
    if mine is None or peer is None or peer <= 0:
        return None
    return mine / peer


def hit_rates(values: Iterable[float | None]) -> str:
    """The hit rates of a cell's builds: one figure when they agree, else min-max."""
    present = sorted({round(100 * v) for v in values if v is not None})
    if not present:
        return "-"
    if len(present) == 1:
        return f"{present[0]}%"
    return f"{present[0]}-{present[-1]}%"


def _cell(runs: Sequence[Run], scenario: str, metric: str, tool: str) -> list[Run]:
    return [
        r for r in runs if r["scenario"] == scenario and r["metric"] == metric and r["tool"] == tool
    ]


def _ordered(runs: Sequence[Run], key: str, order: Sequence[str] = ()) -> list[str]:
    seen = list(dict.fromkeys(r[key] for r in runs))
    return [k for k in order if k in seen] + [k for k in seen if k not in order]


def _secs(value: float | None) -> str:
    return "fail" if value is None else f"{value:.2f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def is_pybuild(tool: str) -> bool:
    """pybuild itself (``pybuild``, ``pybuild-warm``), not a peer."""
    return tool == "pybuild" or tool.startswith("pybuild-")


def table_rows(
    runs: Sequence[Run], tools: Sequence[str], subject: str = "pybuild"
) -> list[list[str]]:
    """Header and one row per scenario and metric: medians, the subject's (a pybuild
    tool's) hits, its ratios over each peer. Another pybuild tool is not a peer."""
    peers = [t for t in tools if not is_pybuild(t)]
    mine_in = subject in tools
    header = ["scenario", "metric"]
    header += [f"{subject} s", "hits"] if mine_in else []
    for peer in peers:
        header += [f"{peer} s"] + ([f"/{peer}"] if mine_in else [])
    rows = [header]
    for scenario in _ordered(runs, "scenario"):
        for metric in _ordered([r for r in runs if r["scenario"] == scenario], "metric", METRICS):
            mine = _cell(runs, scenario, metric, subject)
            mine_median = median(r["seconds"] for r in mine)
            row = [scenario, metric]
            if mine_in:
                row += [_secs(mine_median), hit_rates(r["hit_rate"] for r in mine)]
            for peer in peers:
                theirs = _cell(runs, scenario, metric, peer)
                if not theirs:
                    row += ["-"] + (["-"] if mine_in else [])
                    continue
                peer_median = median(r["seconds"] for r in theirs)
                row += [_secs(peer_median)]
                row += [_times(ratio(mine_median, peer_median))] if mine_in else []
            rows.append(row)
    return rows


def format_table(rows: list[list[str]]) -> str:
    """A markdown table (readable as text too), numbers right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: list[str]) -> str:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ("-" if i < 2 else ":") for i, w in enumerate(widths))
    return "\n".join([line(rows[0]), rule + "|", *map(line, rows[1:])])
