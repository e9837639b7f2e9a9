"""Where a build pushes its image: ``--push`` (every ``-t``) and ``-o type=registry``.

Apart from ``builder.exporters.push`` so that a build that pushes nothing never imports
the registry client (httpx).
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.errors import UsageError
from builder.exporters.outputs import Output, PushCompression
from builder.images.names import normalize
from cache.layers import Compression

PushPlan = tuple[tuple[str, PushCompression], ...]


def push_plan(push: bool, outputs: Sequence[Output], tags: Sequence[str]) -> PushPlan:
    """Where ``build --push`` and ``-o type=registry[,name=REF]`` send the image, in order,
    each with its layer compression (``--push``: gzip; ``-o``: its compression= and
    force-compression=). A name pushed twice goes once, as the first asked.

    A push with no name of its own goes to every ``-t``; UsageError when there is none.
    """
    wanted: dict[str, PushCompression] = {}
    if push:
        if not tags:
            raise UsageError("--push needs a name to push to", hint="add -t REGISTRY/NAME:TAG")
        for tag in tags:
            wanted.setdefault(tag, PushCompression())
    for output in outputs:
        if output.type != "registry":
            continue
        if not output.name and not tags:
            raise UsageError(
                "-o type=registry needs a name to push to",
                hint="add name=REGISTRY/NAME:TAG to the -o, or -t REGISTRY/NAME:TAG",
            )
        names = [normalize(n) for n in (output.name or "").split(",") if n] or tags
        wire = PushCompression(output.compression or Compression.GZIP, output.force)
        for name in names:
            wanted.setdefault(name, wire)
    return tuple(wanted.items())


def push_targets(push: bool, outputs: Sequence[Output], tags: Sequence[str]) -> tuple[str, ...]:
    """The names of ``push_plan``, in order."""
    return tuple(name for name, _ in push_plan(push, outputs, tags))
