"""``pybuild cache stats|history|du|prune|verify``: measure, clean and check the store.

``add_cache`` adds the sub-subcommands to the CLI's ``cache`` parser; ``cmd_cache`` runs
them.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.cli.cache_history import history_json, history_table, miss_kinds
from builder.cli.progress import human_size, print_line
from builder.errors import UsageError
from builder.frontend.durations import parse_duration_ns
from builder.frontend.units import storage_bytes
from builder.images.store import Storage, default_root
from cache.index import BuildRecord

if TYPE_CHECKING:
    from cache.verify import VerifyReport

_DAYS = {"d": 86400 * 10**9, "w": 7 * 86400 * 10**9}  # in ns, besides Go's units


def add_cache(p: argparse.ArgumentParser) -> None:
    """The sub-subcommands of ``cache`` and their flags."""
    cache_sub = p.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    s = cache_sub.add_parser(
        "stats",
        help="hit rate and time saved over recorded builds",
        description="Hit rate, time saved and bytes reused over the recorded builds, by "
        "Dockerfile (or --by label:KEY, tag) and overall. The history survives `cache "
        "prune`; --reset clears it.",
    )
    s.add_argument("--since", metavar="DURATION", help="only builds in the last DURATION (24h)")
    s.add_argument(
        "--by",
        default="dockerfile",
        metavar="dockerfile|tag|label:KEY",
        help="group builds by Dockerfile (default), by tag, or by the value of a --label",
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--reset", action="store_true", help="forget the recorded build history")
    h = cache_sub.add_parser(
        "history",
        help="recorded builds: time, Dockerfile, tags, steps, hits, duration, miss reasons",
    )
    h.add_argument("--since", metavar="DURATION", help="only builds in the last DURATION (24h)")
    h.add_argument("--json", action="store_true", help="print JSON")
    d = cache_sub.add_parser("du", help="bytes the store uses, by kind")
    d.add_argument("--json", action="store_true", help="print JSON")
    pr = cache_sub.add_parser(
        "prune",
        help="remove cache records and the blobs only they use",
        description="Without --all, remove step records no build has used for 48 hours "
        "(or for DURATION with --filter until=DURATION); with --all, every record. Then "
        "remove every blob and unpacked layer nothing refers to. What a tagged image "
        "needs is never removed, nor the build history (`cache stats --reset` clears it).",
    )
    pr.add_argument("--all", action="store_true", help="remove every record tags do not need")
    pr.add_argument(
        "--keep-storage",
        metavar="SIZE",
        help="then drop least recently used records until the store fits in SIZE (10GB)",
    )
    pr.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="until=DURATION",
        help="only records unused for longer than DURATION (e.g. until=24h)",
    )
    v = cache_sub.add_parser("verify", help="check every blob and index record")
    v.add_argument(
        "--repair",
        action="store_true",
        help="remove bad entries, unpack tampered layers again, rebuild a damaged index",
    )
    v.add_argument("--json", action="store_true", help="print JSON")


def cmd_cache(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[Storage, argparse.Namespace], int]] = {
        "stats": _stats,
        "history": _history,
        "du": _du,
        "prune": _prune,
    }
    root = args.root or default_root()
    if args.cache_command == "verify":
        return _verify_command(root, args)
    with Storage.open(root, warn=print_line) as storage:
        return handlers[args.cache_command](storage, args)


def _verify_command(root: Path, args: argparse.Namespace) -> int:
    """``verify`` checks the index itself first; ``--repair`` rebuilds a damaged one."""
    from cache.errors import IndexDamaged
    from cache.reindex import rebuild_index
    from cache.store import BlobStore

    rebuilt: list[str] = []
    try:
        storage = Storage.open(root)
        try:
            storage.index.check_integrity()
        except IndexDamaged:
            storage.close()
            raise
    except IndexDamaged:
        if not args.repair:
            raise
        rebuilt = rebuild_index(root, BlobStore(root)).lines()
        storage = Storage.open(root)
    with storage:
        return _verify(storage, args, rebuilt)


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``24h``, ``7d``, ``1h30m`` (Go durations, with days and weeks) or
    plain seconds, to seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        ns = parse_duration_ns(text, _DAYS)
    except ValueError:
        ns = -1
    if ns < 0:
        raise UsageError(f"invalid duration {text!r}", hint="write it like 30m, 24h or 7d")
    return ns / 10**9


def parse_size(text: str) -> int:
    """``512MB``, ``10GB``, ``1GiB``, ``2g`` or plain bytes, to bytes."""
    try:
        return storage_bytes(text)
    except ValueError:
        raise UsageError(f"invalid size {text!r}", hint="write it like 500MB or 10GB") from None


def _stats(storage: Storage, args: argparse.Namespace) -> int:
    if args.reset:
        removed = storage.index.remove_builds(float("inf"))
        print_line(f"forgot {removed} recorded builds", err=False)
        return 0
    since = time.time() - parse_duration(args.since) if args.since else None
    builds = storage.index.builds(since)
    group_of = _grouping(args.by)
    groups: dict[str, list[BuildRecord]] = {}
    for build in builds:
        for name in group_of(build):
            groups.setdefault(name, []).append(build)
    rows = [_stat_row(name, group) for name, group in sorted(groups.items())]
    overall = _stat_row("(all)", builds)
    if args.json:
        doc = {"by": args.by, "groups": rows, "overall": overall}
        if args.by == "dockerfile":
            doc["dockerfiles"] = rows  # the name before --by
        print_line(json.dumps(doc, indent=2), err=False)
        return 0
    header = (args.by.upper(), "BUILDS", "STEPS", "CACHED", "HIT RATE", "TIME SAVED", "REUSED")
    table = [header] + [_stat_cells(r) for r in [*rows, overall]]
    _print_table(table)
    return 0


def _grouping(by: str) -> Callable[[BuildRecord], list[str]]:
    """What ``--by`` groups a build under (a build with two tags counts under both)."""
    if by == "dockerfile":
        return lambda b: [b.dockerfile]
    if by == "tag":
        return lambda b: list(b.tags) or ["(untagged)"]
    if by.startswith("label:") and len(by) > len("label:"):
        key = by.removeprefix("label:")
        return lambda b: [dict(b.labels).get(key, "(unlabelled)")]
    raise UsageError(f"--by {by!r}: cannot group by that", hint="use dockerfile, tag or label:KEY")


def _stat_row(name: str, builds: list[BuildRecord]) -> dict[str, Any]:
    steps = sum(len(b.steps) for b in builds)
    cached = sum(b.cached for b in builds)
    return {
        "group": name,
        "dockerfile": name,
        "builds": len(builds),
        "steps": steps,
        "cached": cached,
        "hit_rate": round(cached / steps, 4) if steps else None,
        "time_saved": round(sum(b.time_saved for b in builds), 3),
        "bytes_reused": sum(b.bytes_reused for b in builds),
        "misses": miss_kinds(builds),
    }


def _history(storage: Storage, args: argparse.Namespace) -> int:
    since = time.time() - parse_duration(args.since) if args.since else None
    builds = storage.index.builds(since)
    if args.json:
        print_line(history_json(builds), err=False)
        return 0
    _print_table(history_table(builds))
    return 0


def _stat_cells(row: dict[str, Any]) -> tuple[str, ...]:
    rate = "-" if row["hit_rate"] is None else f"{100 * row['hit_rate']:.0f}%"
    return (
        row["dockerfile"],
        str(row["builds"]),
        str(row["steps"]),
        str(row["cached"]),
        rate,
        f"{row['time_saved']:.1f}s",
        human_size(row["bytes_reused"]),
    )


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        print_line("   ".join(cells).rstrip(), err=False)


def _du(storage: Storage, args: argparse.Namespace) -> int:
    from cache.gc import usage

    use = usage(storage.blobs, storage.layers, storage.index)
    kinds = {
        "layer_blobs": use.layer_blobs,
        "configs_manifests": use.config_blobs,
        "unreferenced_blobs": use.other_blobs,
        "unpacked_layers": use.unpacked,
        "index": use.index,
        "tmp": use.tmp,
    }
    if args.json:
        doc = {"bytes": kinds, "counts": use.counts, "total": use.total}
        print_line(json.dumps(doc, indent=2), err=False)
        return 0
    rows = [("KIND", "SIZE")] + [(k.replace("_", " "), human_size(v)) for k, v in kinds.items()]
    _print_table([*rows, ("total", human_size(use.total))])
    return 0


def _prune(storage: Storage, args: argparse.Namespace) -> int:
    from cache.gc import PruneOptions, prune

    unused_for: float | None = None if args.all else 48 * 3600.0
    for item in args.filter:
        name, sep, value = item.partition("=")
        if name != "until" or not sep:
            raise UsageError(
                f"--filter {item!r}: only until=DURATION is supported", hint="e.g. until=24h"
            )
        unused_for = parse_duration(value)
    keep = parse_size(args.keep_storage) if args.keep_storage else None
    options = PruneOptions(remove_all=args.all, unused_for=unused_for, keep_storage=keep)
    report = prune(storage.blobs, storage.layers, storage.index, options)
    print_line(
        f"removed {report.records} step records, {report.blobs} blobs, "
        f"{report.unpacked} unpacked layers",
        err=False,
    )
    print_line(f"Total reclaimed space: {human_size(report.bytes_freed)}", err=False)
    return 0


def _verify(storage: Storage, args: argparse.Namespace, rebuilt: list[str]) -> int:
    from cache.verify import verify_store

    report = verify_store(storage.blobs, storage.layers, storage.index, repair=args.repair)
    if args.json:
        doc = {
            "clean": report.clean,
            "blobs_checked": report.blobs_checked,
            "records_checked": report.records_checked,
            "findings": [f.__dict__ for f in report.findings],
            "repaired": [*rebuilt, *report.repaired],
            "repair_failed": list(report.failed),
        }
        print_line(json.dumps(doc, indent=2), err=False)
        return _verify_exit(report, repair=args.repair)
    for f in report.findings:
        label = "PROBLEM" if f.problem else "note"
        print_line(f"{label}: {f.kind} {f.subject}: {f.detail}", err=False)
    for done in [*rebuilt, *report.repaired]:
        print_line(f"repaired: {done}", err=False)
    for failed in report.failed:
        print_line(f"PROBLEM: could not repair {failed}", err=False)
    notes = len(report.findings) - len(report.problems)
    state = "clean" if report.clean else f"{len(report.problems)} problems"
    print_line(
        f"checked {report.blobs_checked} blobs and {report.records_checked} records: "
        f"{state}, {notes} notes",
        err=False,
    )
    if not report.clean and not args.repair:
        print_line(
            "hint: run `pybuild cache verify --repair` to remove the bad entries; the next "
            "build, pull or load writes what they held afresh"
        )
    return _verify_exit(report, repair=args.repair)


def _verify_exit(report: VerifyReport, *, repair: bool) -> int:
    """0 when clean, or when --repair fixed every problem; 1 otherwise."""
    if repair:
        return 1 if report.failed else 0
    return 0 if report.clean else 1
