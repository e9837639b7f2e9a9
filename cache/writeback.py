"""Starting the writeback of part of a file early (Linux ``sync_file_range``).

A blob is fsynced before it is committed; writing a big one back to disk only at that
fsync makes the step wait for all of it at the end. ``start`` asks the kernel to begin
writing a range back now, without waiting (``SYNC_FILE_RANGE_WRITE``), so the writes
overlap the rest of the blob's making. It is only a hint: durability still comes from
the fsync, and where the call is missing (not Linux, no libc) it does nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

STEP = 8 << 20  # bytes written between two starts
_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    import ctypes  # here: only a build that writes a big blob needs it

    try:
        call = ctypes.CDLL(None).sync_file_range  # the C library this process runs on
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return call


def start(fd: int, offset: int, length: int) -> None:
    """Begin writing ``length`` bytes of ``fd`` from ``offset`` back to disk; no wait,
    and errors ignored (the fsync that follows reports any that matter)."""
    call = _sync_file_range()
    if call is not None:
        call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
