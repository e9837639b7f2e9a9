"""The store a command works on: ``--root``, else the default root."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from builder.cli.progress import print_line
from builder.images.store import Storage, default_root


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[Storage]:
    """The store of ``--root`` (default: ``default_root()``), closed on exit."""
    storage = Storage.open(args.root or default_root(), warn=print_line)
    try:
        yield storage
    finally:
        storage.close()
