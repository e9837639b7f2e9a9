"""Per-file records of what a COPY reads from the context, for miss explanations.

``cache.keys.KeyInputs.files`` keeps them beside the aggregate fingerprint, so a miss
can say "file app/main.py changed (content)" instead of "the context changed".
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.context import BuildContext
from builder.errors import BuildError
from cache.keys import Pairs, file_record


def file_records(
    context: BuildContext, rels: Sequence[str], *, excludes: Sequence[str] = ()
) -> Pairs:
    """(path, ``file_record``) for every entry that copying ``rels`` reads, sorted by path.

    Reads file content through ``context.hash_file`` (the stat cache, when one is
    plugged in); raises BuildError when a file cannot be read.
    """
    records: dict[str, str] = {}
    for rel in rels:
        for e in context.walk(rel, excludes=excludes):
            if e.rel in records:
                continue
            content = ""
            if e.kind == "file":
                try:
                    content = context.hash_file(e.path).hex()
                except OSError as exc:
                    raise BuildError(
                        f"cannot read {e.rel} from the build context: {exc.strerror}",
                        hint="check its permissions, or exclude it in .dockerignore",
                    ) from None
            link = e.link_target or ""
            records[e.rel] = file_record(e.kind, e.mode, e.uid, e.gid, link, content)
    return tuple(sorted(records.items()))
