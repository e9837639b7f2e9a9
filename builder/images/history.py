"""The ``created`` times of an image's history and config, as BuildKit's image exporter
sets them, so that a rebuild from the cache makes the same image ID.

No time here comes from the clock. The Dockerfile frontend (dockerfile2llb/convert.go
``commitToHistory``) gives every new history entry the SOURCE_DATE_EPOCH, or no time
without one. The exporter (exporter/containerimage/writer.go
``normalizeLayersAndHistory``) then gives an entry that made a layer the time its layer
was made (the cache record's ``createdAt``: unchanged on a cache hit), and every entry
still without a time the time of the first new layer before it is reached, later the
time of the layer before it. The config's ``created`` is the last history entry's time
(``patchImageConfig``; the frontend drops the base image's own ``created``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from cache.oci import History


def rfc3339(seconds: float) -> str:
    """UTC time as Go's RFC3339Nano writes it: fraction only when not zero, trailing
    zeros dropped (microseconds at most: what a float of unix time holds)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def fill_history(history: Sequence[History]) -> tuple[History, ...]:
    """Give entries without a time (``created == ""``) one, as BuildKit does: those
    before the first timed entry that follows an untimed one get that entry's time; the
    rest the time of the timed entry before them. With no timed entry, none gets one."""
    first = ""
    untimed_seen = False
    for entry in history:
        if entry.created:
            first = entry.created
            if untimed_seen:
                break
        else:
            untimed_seen = True
    out: list[History] = []
    current, untimed_seen = first, False
    for entry in history:
        if entry.created:
            if untimed_seen:
                current = entry.created
            out.append(entry)
        else:
            untimed_seen = True
            out.append(replace(entry, created=current))
    return tuple(out)


def image_created(history: Sequence[History]) -> str:
    """The config's ``created``: the last history entry's time ("" when none has one)."""
    for entry in reversed(history):
        if entry.created:
            return entry.created
    return ""
