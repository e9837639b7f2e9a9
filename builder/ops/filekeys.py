"""Per-file records of what a COPY reads from the context, for miss explanations.

``cache.keys.KeyInputs.files`` keeps them beside the aggregate fingerprint, so a miss
can say "file app/main.py changed (content)" instead of "the context changed".
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.ops.context import BuildContext
from cache.keys import Pairs


def file_records(
    context: BuildContext, rels: Sequence[str], *, excludes: Sequence[str] = ()
) -> Pairs:
    """(path, ``file_record``) for every entry that copying ``rels`` reads, sorted by path.

    Reuses the walk of the ``context.fingerprint`` call just made for the same key
    (``BuildContext.take_scan``), else walks anew; file content goes through
    ``context.hash_file`` (the stat cache, when one is plugged in). Raises BuildError
    when a file cannot be read.
    """
    return context.take_scan(rels, excludes=excludes).records()
