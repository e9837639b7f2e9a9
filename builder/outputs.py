"""Build outputs (``-o``): where the built image goes besides the local store.

The image is always committed to the local store (its layers are there already, so this
costs one config and one manifest blob); ``-o`` adds exports: ``type=oci,dest=FILE``,
``type=docker,dest=FILE`` and ``type=local,dest=DIR`` (the root filesystem).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import UsageError
from builder.export import write_docker_archive, write_oci_archive, write_rootfs
from builder.refs import normalize
from builder.storage import Storage
from cache.digest import Digest

OUTPUT_TYPES = ("oci", "docker", "local", "tar")


@dataclass(frozen=True)
class Output:
    type: str
    dest: Path
    name: str | None = None


def parse_output(spec: str) -> Output:
    """``type=oci,dest=out.tar[,name=app:1]``; a bare path means ``type=local,dest=PATH``."""
    if "=" not in spec:
        return Output("local", Path(spec))
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise UsageError(f"-o {spec}: expected key=value pairs, got {part!r}")
        fields[key.strip()] = value.strip()
    kind = fields.pop("type", "local")
    dest = fields.pop("dest", None)
    name = fields.pop("name", None)
    if kind not in OUTPUT_TYPES:
        raise UsageError(
            f"-o {spec}: unknown output type {kind!r}",
            hint="use type=oci, type=docker or type=local",
        )
    if not dest:
        raise UsageError(f"-o {spec}: dest= is required")
    if fields:
        raise UsageError(f"-o {spec}: unknown option(s) {', '.join(sorted(fields))}")
    return Output("oci" if kind == "tar" else kind, Path(dest), name)


def write_output(storage: Storage, output: Output, image: Digest, tags: Sequence[str]) -> None:
    names = [normalize(output.name)] if output.name else [normalize(t) for t in tags]
    refs = [(n, image) for n in names] or [("", image)]
    if output.type == "oci":
        write_oci_archive(storage.blobs, refs, output.dest)
    elif output.type == "docker":
        write_docker_archive(storage.blobs, refs, output.dest)
    else:
        write_rootfs(storage.blobs, image, output.dest)
